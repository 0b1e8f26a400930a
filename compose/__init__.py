"""The Compose half of pycompose: files in, a typed project model and plans out. Never touches the kernel."""

__version__ = "0.1.0"
