"""GPT-2's byte <-> unicode mapping, used by the Hugging Face ``vocab.json``/``merges.txt`` files.

GPT-2's original files store tokens as text, and a token's bytes need not be valid UTF-8
nor printable (a space, a newline, half of an emoji). So each of the 256 byte values gets a
stand-in character: the 188 printable Latin-1 bytes map to themselves, and the 68 others
(control characters, space, 0x7F-0xA0, 0xAD) map to U+0100, U+0101, ... in byte order.
That is why a leading space shows up as "Ġ" (U+0120, the stand-in for byte 0x20).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Map each byte value 0..255 to its printable stand-in character."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    n_shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n_shifted)
            n_shifted += 1
    return mapping


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`."""
    return {ch: b for b, ch in bytes_to_unicode().items()}


def text_to_token(text: str) -> bytes:
    """GPT-2 file text back to bytes, e.g. "Ġthe" -> b" the". Raises KeyError on a foreign char."""
    table = unicode_to_bytes()
    return bytes(table[ch] for ch in text)
