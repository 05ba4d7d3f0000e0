"""Private helpers shared by every layer: argument checks, atomic files, safetensors I/O.

Nothing here is public API; the layers above import these modules by name.
"""
