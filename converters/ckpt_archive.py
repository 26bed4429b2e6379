"""The zip side of a torch checkpoint, read within declared, checked sizes.

Nothing is decompressed before its record has passed: a known compression (stored or deflate), no encryption, a
declared size the caller expects and the budget allows, compressed bytes that lie inside the file and, for deflate,
a plausible ratio (torch writes records stored; a huge ratio is a zip bomb). Records are then read into a buffer of
exactly the declared size, so a lying header can neither grow memory nor hand back a short record; zipfile checks
the CRC as the last byte arrives. The central directory is sized from its end record before zipfile parses it.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from converters.errors import CheckpointError

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_CHUNK = 4 << 20


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else \
        f"{n} bytes"


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 2 << 30      # everything read from the archive (records, decompressed)
    max_members: int = 200_000          # central directory entries
    max_directory_bytes: int = 32 << 20
    max_ratio: float = 200.0            # deflate ratio above which a record is treated as a zip bomb ...
    ratio_floor: int = 1 << 20          # ... once it declares at least this many bytes


class Budget:
    """Bytes the read may still allocate; `take` refuses, naming the limit, before anything is allocated."""

    def __init__(self, source: str, limit: int, hint: str = "EDGE_POSE_CHECKPOINT_MAX_BYTES raises it"):
        self.source, self.limit, self.hint, self.used = source, limit, hint, 0

    def take(self, n: int, what: str) -> None:
        if n < 0 or self.used + n > self.limit:
            raise CheckpointError(f"{self.source}: {what} would bring the read to {_gib(self.used + n)}, over the "
                                  f"{_gib(self.limit)} limit ({self.hint})")
        self.used += n


def _directory_size(fh, file_size: int) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end records, or None when there is no end record."""
    tail_len = min(file_size, 22 + 0xFFFF)
    fh.seek(file_size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or at + 22 > len(tail):
        return None
    entries, cd_size = struct.unpack("<HL", tail[at + 10:at + 16])
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and at >= 20 and tail[at - 20:at - 16] == _EOCD64_LOCATOR:
        offset = struct.unpack("<Q", tail[at - 12:at - 4])[0]
        if offset + 56 <= file_size:
            fh.seek(offset)
            record = fh.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", record[32:48])
    return entries, cd_size


class Archive:
    """A zip opened after its central directory was sized; members are checked, then read by declared size."""

    def __init__(self, path: Path, limits: ArchiveLimits, budget: Budget):
        self.path, self.limits, self.budget = path, limits, budget
        self.file_size = path.stat().st_size
        with open(path, "rb") as fh:
            sized = _directory_size(fh, self.file_size)
        if sized is not None:
            entries, cd_size = sized
            if entries > limits.max_members or cd_size > min(limits.max_directory_bytes, self.file_size):
                raise CheckpointError(f"{path}: zip central directory declares {entries} entries in "
                                      f"{_gib(cd_size)} (limits: {limits.max_members} entries, "
                                      f"{_gib(limits.max_directory_bytes)}, and the file's own size)")
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as exc:
            raise CheckpointError(f"{path}: corrupt zip archive ({_short(exc)})") from None
        self.infos = {info.filename: info for info in self.zip.infolist()}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def names(self) -> list[str]:
        return list(self.infos)

    def info(self, name: str) -> zipfile.ZipInfo | None:
        return self.infos.get(name)

    def check(self, name: str, expected_size: int | None = None, max_size: int | None = None) -> zipfile.ZipInfo:
        """The member's entry once its method, flags and sizes pass; CheckpointError otherwise. Reads nothing."""
        info = self.infos.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: record '{name}' is missing from the archive")
        where = f"{self.path}: record '{name}'"
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{where} is encrypted (checkpoints are never encrypted; refused)")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{where} uses zip compression method {info.compress_type} (only stored and "
                                  f"deflate are read)")
        if expected_size is not None and info.file_size != expected_size:
            raise CheckpointError(f"{where} holds {info.file_size} bytes but the checkpoint declares "
                                  f"{expected_size} for it")
        if max_size is not None and info.file_size > max_size:
            raise CheckpointError(f"{where} declares {_gib(info.file_size)}, over the {_gib(max_size)} limit")
        if info.header_offset + 30 + info.compress_size > self.file_size:
            raise CheckpointError(f"{where} declares {_gib(info.compress_size)} of data past the end of the "
                                  f"{_gib(self.file_size)} file (truncated or forged)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{where} is stored uncompressed but declares {info.compress_size} bytes "
                                  f"stored for {info.file_size}")
        if (info.compress_type == zipfile.ZIP_DEFLATED and info.file_size >= self.limits.ratio_floor
                and info.file_size > self.limits.max_ratio * max(info.compress_size, 1)):
            raise CheckpointError(f"{where} inflates {_gib(info.compress_size)} to {_gib(info.file_size)} "
                                  f"(ratio over {self.limits.max_ratio:.0f}: a zip bomb; refused)")
        return info

    def read(self, name: str, expected_size: int | None = None, max_size: int | None = None) -> bytearray:
        """The member's bytes, exactly its declared size, after `check` and the budget; writable (a bytearray)."""
        info = self.check(name, expected_size, max_size)
        self.budget.take(info.file_size, f"record '{name}' ({_gib(info.file_size)})")
        buf = bytearray(info.file_size)
        view = memoryview(buf)
        got = 0
        try:
            with self.zip.open(info) as member:
                while got < info.file_size:
                    chunk = member.read(min(_CHUNK, info.file_size - got))
                    if not chunk:
                        break
                    view[got:got + len(chunk)] = chunk
                    got += len(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError,
                struct.error) as exc:
            raise CheckpointError(f"{self.path}: record '{name}' is corrupt ({_short(exc)})") from None
        if got != info.file_size:
            raise CheckpointError(f"{self.path}: record '{name}' ends after {got} of its {info.file_size} bytes "
                                  f"(truncated)")
        return buf


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]
