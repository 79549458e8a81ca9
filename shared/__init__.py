"""The GenAI Lab Playground's shared package: model registry and loading, devices, memory,
launching. Importing it is cheap; heavy libraries are imported inside the functions that
need them."""
