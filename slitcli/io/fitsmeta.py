"""Header cards every slitcli FITS file carries, and FITS checksums written in place.

`file_date` is the ``DATE`` of every output: the wall time in UTC, or, when the
environment sets ``SOURCE_DATE_EPOCH`` (seconds since 1970-01-01 UTC, the
reproducible-builds convention), that time, so that two runs with the same inputs give
the same bytes. `write_checksums` fills the ``CHECKSUM``/``DATASUM`` cards of every
HDU (FITS standard 4.0, appendix J) in place, reading the data once and rewriting only
the headers; their comments are fixed text, not the time, for the same reason.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from slitcli import __version__
from slitcli.errors import ConfigError
from slitcli.io.columns import keyword_comment

__all__ = [
    "file_date",
    "software_cards",
    "add_checksum_cards",
    "add_longstrn_card",
    "needs_longstrn",
    "data_unit_bytes",
    "short_description",
    "write_checksums",
    "CHECKSUM_COMMENT",
    "DATASUM_COMMENT",
]

CHECKSUM_COMMENT = "HDU checksum (FITS 4.0 appendix J)"
DATASUM_COMMENT = "Data unit checksum (FITS 4.0 appendix J)"
_BLOCK = 2880
_CARD = 80
_CHUNK_WORDS = 1 << 22  # 16 MiB of data per numpy sum


def file_date() -> str:
    """UTC time for the ``DATE`` card, ``YYYY-MM-DDThh:mm:ss``: ``SOURCE_DATE_EPOCH`` if set, else now.

    Raises
    ------
    ConfigError
        If ``SOURCE_DATE_EPOCH`` is set but is not a non-negative integer.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or epoch == "":
        when = datetime.datetime.now(datetime.timezone.utc)
    else:
        if not epoch.strip().isdigit():
            msg = f"SOURCE_DATE_EPOCH: must be a whole number of seconds since 1970-01-01 UTC, got {epoch!r}"
            raise ConfigError(msg)
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def software_cards(date: str | None = None) -> list[dict]:
    """``ORIGIN``, ``SWVERS`` and ``DATE`` as fitsio header records."""
    values = {"ORIGIN": "slitcli", "SWVERS": __version__, "DATE": date or file_date()}
    return [{"name": k, "value": v, "comment": keyword_comment(k)} for k, v in values.items()]


def add_checksum_cards(hdu) -> None:
    """Write placeholder ``CHECKSUM`` and ``DATASUM`` cards into fitsio `hdu`; `write_checksums` fills them.

    (fitsio drops these two keywords from a header passed as records, hence one key at a time.)
    """
    hdu.write_key("CHECKSUM", "0" * 16, CHECKSUM_COMMENT)
    hdu.write_key("DATASUM", "0", DATASUM_COMMENT)


def add_longstrn_card(hdu, cards) -> None:
    """Announce the CONTINUE long-string convention in fitsio `hdu` (``LONGSTRN``) if any of `cards` may use it.

    `cards` are (value, comment) pairs (see `needs_longstrn`).
    """
    if needs_longstrn(cards):
        hdu.write_key("LONGSTRN", "OGIP 1.0", "The OGIP long string convention may be used")


def short_description(text: str, width: int = 47) -> str:
    """`text` cut at a word boundary to at most `width` characters (a TTYPEn comment), with '...' when cut."""
    if len(text) <= width:
        return text
    return text[: width - 3].rsplit(" ", 1)[0].rstrip(" ,;:(") + "..."


# ---------------------------------------------------------------- checksums


def _ones_complement_add(a: int, b: int) -> int:
    s = a + b
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def _sum32(words: np.ndarray, start: int = 0) -> int:
    """32-bit ones' complement sum of big-endian uint32 `words`, added to `start`."""
    s = start
    for i in range(0, words.size, _CHUNK_WORDS):
        s = _ones_complement_add(s, int(words[i : i + _CHUNK_WORDS].sum(dtype=np.uint64)))
    return s


_EXCLUDE = {0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60}


def _encode(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit checksum (FITS standard, J.2)."""
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(i + 15) % 16] for i in range(16)).decode("ascii")


def _string_card(key: str, value: str, comment: str) -> bytes:
    text = f"{key:<8}= {(chr(39) + value.ljust(8) + chr(39)):<20} / {comment}"
    if len(text) > _CARD:
        msg = f"card {key} longer than 80 characters"
        raise ValueError(msg)
    return text.ljust(_CARD).encode("ascii")


def _int_value(card: bytes) -> int:
    return int(card[10:].split(b"/")[0].strip())


def data_unit_bytes(header) -> int:
    """Bytes in the data unit described by `header` (a mapping of keyword -> integer value), before padding (FITS 4.0, 4.4.1)."""
    naxis = int(header["NAXIS"])
    if naxis == 0:
        return 0
    n = 1
    for k in range(1, naxis + 1):
        n *= int(header[f"NAXIS{k}"])
    return abs(int(header["BITPIX"])) // 8 * int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0)) + n)


def needs_longstrn(cards) -> bool:
    """True if any of the (value, comment) `cards` may be continued on CONTINUE cards (then ``LONGSTRN`` is due).

    cfitsio (and astropy) continue a string value when it and its comment do not fit on
    one card; fitsverify asks for ``LONGSTRN`` wherever that happens. This errs on the side of yes.
    """
    return any(isinstance(v, str) and len(v.replace("'", "''")) + len(c or "") > 60 for v, c in cards)


def write_checksums(path: str | Path) -> None:
    """Fill ``CHECKSUM`` and ``DATASUM`` of every HDU of the FITS file `path`, in place.

    Every HDU must already hold both cards (`add_checksum_cards`). The data units are
    read once (memory-mapped, in 16 MiB pieces) and never rewritten; only the header
    blocks are. Raises ValueError if a header lacks a card or the file is truncated.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        offset, index = 0, 0
        while offset < size:
            header = bytearray()
            while True:
                block = f.read(_BLOCK)
                if len(block) < _BLOCK:
                    msg = f"{path}: HDU {index}: truncated header"
                    raise ValueError(msg)
                header += block
                cards = [bytes(header[i : i + _CARD]) for i in range(len(header) - _BLOCK, len(header), _CARD)]
                if any(c[:8] == b"END     " for c in cards):
                    break
            keys = {}
            for i in range(0, len(header), _CARD):
                key = header[i : i + 8].decode("ascii").strip()
                if key == "END":
                    break
                keys.setdefault(key, i)
            for key in ("CHECKSUM", "DATASUM"):
                if key not in keys:
                    msg = f"{path}: HDU {index} has no {key} card to fill"
                    raise ValueError(msg)
            sizes = {k: _int_value(bytes(header[i : i + _CARD])) for k, i in keys.items() if k.startswith("NAXIS") or k in ("BITPIX", "PCOUNT", "GCOUNT")}
            nbytes = data_unit_bytes(sizes)
            padded = -(-nbytes // _BLOCK) * _BLOCK
            data_offset = offset + len(header)
            if data_offset + padded > size:
                msg = f"{path}: HDU {index}: data unit runs past the end of the file"
                raise ValueError(msg)
            datasum = 0
            if padded:
                words = np.memmap(path, dtype=">u4", mode="r", offset=data_offset, shape=(padded // 4,))
                datasum = _sum32(words)
                del words
            header[keys["DATASUM"] : keys["DATASUM"] + _CARD] = _string_card("DATASUM", str(datasum), DATASUM_COMMENT)
            header[keys["CHECKSUM"] : keys["CHECKSUM"] + _CARD] = _string_card("CHECKSUM", "0" * 16, CHECKSUM_COMMENT)
            total = _sum32(np.frombuffer(bytes(header), dtype=">u4"), datasum)
            header[keys["CHECKSUM"] : keys["CHECKSUM"] + _CARD] = _string_card("CHECKSUM", _encode(~total & 0xFFFFFFFF), CHECKSUM_COMMENT)
            f.seek(offset)
            f.write(header)
            offset = data_offset + padded
            f.seek(offset)
            index += 1
