"""The runtime half of pycompose: images, containers, networks, volumes, state.

Knows nothing of Compose files.
"""
