"""Model files: safetensors read/write written from scratch (and Hugging Face config mapping)."""

from tinygpt.io.safetensors import (
    SafetensorsError,
    from_bfloat16_bits,
    load_file,
    load_sharded,
    read_metadata,
    save_file,
    to_bfloat16_bits,
)

__all__ = [
    "SafetensorsError",
    "from_bfloat16_bits",
    "load_file",
    "load_sharded",
    "read_metadata",
    "save_file",
    "to_bfloat16_bits",
]
