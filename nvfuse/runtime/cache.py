"""The cubin caches: CUDA C++ source + arch -> cubin bytes, compiling at most once.

`compile_source(src, arch)` (re-exported as `nvfuse.compile_source`) looks in a process-wide
memory cache, then in the on-disk cache, then runs NVRTC (runtime/nvrtc.py), filling the caches
it missed.  Both caches are keyed by `cache_key()`: sha256 over the source text, the arch, the
NVRTC version, nvfuse's version, the cubin kind and the compile options, so any of those
changing misses.

Disk layout: `<NVFUSE_CACHE_DIR>/<key[:2]>/<key>.cubin`, each file a fixed header (magic, format
version, the key's digest, payload length, payload sha256) followed by the cubin.  Writes go to
a temp file in the same directory and are published with os.replace, so the final name only
ever holds a complete entry and concurrent writers of the same key are safe (last one wins; both
wrote the same bytes).  A bad entry (truncated, flipped bytes, foreign file) is detected on read,
warned about once and rebuilt.  A cache directory that cannot be written is warned about once and
the process continues memory-only for it: the disk cache can slow nvfuse down, never break it.
NVFUSE_CACHE=0 means no disk reads or writes at all.

Counters (nvfuse.counters): memory_hits, disk_hits, nvrtc_compiles.  NVFUSE_DUMP=ptx also dumps the
kernel's PTX through runtime/dump.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import threading
import warnings

from nvfuse import config
from nvfuse.runtime import nvrtc
from nvfuse.runtime.dump import dump, enabled
from nvfuse.counters import bump

MAGIC = b"NVFCUBIN"
FORMAT_VERSION = 1
# Part of every key: what a cached cubin is.  "2": the whole image (before, entries held CuPy's
# getCUBIN output, one byte short; the new key never finds them).
CUBIN_KIND = "2"
# magic, format version, sha256(key) digest, payload length, sha256(payload) digest.
_HEADER = struct.Struct("<8sI32sQ32s")

_lock = threading.Lock()
_memory: dict[str, bytes] = {}
_ptx: dict[str, str] = {}
_reported: set[str] = set()  # corrupt entries and broken directories already warned about
_broken_dirs: set[str] = set()  # cache dirs found unwritable: memory-only from then on

# The first __global__ function's name; __launch_bounds__(...) may stand before or after `void`
# (nvfuse's emitter writes `__global__ void __launch_bounds__(N)\nname(`).
_BOUNDS = r"(?:__launch_bounds__\s*\([^)]*\)\s*)?"
_KERNEL_NAME = re.compile(rf"__global__\s+{_BOUNDS}void\s+{_BOUNDS}(\w+)\s*\(")


def compile_source(src: str, arch: str | None = None, *, name: str | None = None) -> bytes:
    """The cubin for `src` compiled for `arch` (default: the current GPU's, else NVFUSE_ARCH).

    `name` only labels errors and dumps; by default it is the first __global__ function's name.
    Raises nvfuse.CompileError (numbered source + NVRTC log) when NVRTC rejects the source.
    """
    arch = arch or nvrtc.target_arch()
    key = cache_key(src, arch)
    name = name or _kernel_name(src, key)
    cubin = _memory.get(key)
    if cubin is not None:
        bump("memory_hits")
    else:
        cubin = _from_disk_or_nvrtc(src, arch, name, key)
        with _lock:
            _memory.setdefault(key, cubin)
    if enabled("ptx"):
        dump("ptx", name, _ptx_text(src, arch, name, key))
    return cubin


def cache_key(src: str, arch: str) -> str:
    """Hex sha256 naming the cubin of `src` for `arch` with this NVRTC, nvfuse and options."""
    import nvfuse  # at call time: nvfuse/__init__ may import this module while it is loading

    h = hashlib.sha256()
    parts = (src, arch, nvrtc.nvrtc_version(), nvfuse.__version__, CUBIN_KIND,
             *nvrtc.COMPILE_OPTIONS)
    for part in parts:
        # Length-prefix each part so no two different part lists hash the same byte stream.
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def entry_path(key: str, cache_dir: str | None = None) -> str:
    """Where the disk cache keeps the entry for `key`."""
    return os.path.join(cache_dir or config.get().cache_dir, key[:2], f"{key}.cubin")


def clear_memory_cache() -> None:
    """Forget every in-memory cubin and PTX, and which entries/dirs were reported (tests)."""
    with _lock:
        _memory.clear()
        _ptx.clear()
        _reported.clear()
        _broken_dirs.clear()


# -- disk ------------------------------------------------------------------------------------


def _from_disk_or_nvrtc(src: str, arch: str, name: str, key: str) -> bytes:
    cfg = config.get()
    use_disk = cfg.disk_cache and cfg.cache_dir not in _broken_dirs
    path = entry_path(key, cfg.cache_dir) if use_disk else None
    if path is not None:
        cubin = _read_entry(path, key)
        if cubin is not None:
            bump("disk_hits")
            return cubin
    cubin = nvrtc.compile_to_cubin(src, arch, f"{name}.cu")
    bump("nvrtc_compiles")
    if path is not None:
        _write_entry(cfg.cache_dir, path, key, cubin)
    return cubin


def _read_entry(path: str, key: str) -> bytes | None:
    """The cubin stored at `path`, or None when absent, unreadable or bad (warned once)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None  # a plain miss; an unusable directory is reported when writing
    except OSError as e:
        _report(path, f"nvfuse: cannot read cubin cache entry {path} ({e}); recompiling")
        return None
    payload, problem = _decode(data, key)
    if problem is not None:
        _report(path, f"nvfuse: bad cubin cache entry {path} ({problem}); rebuilding it")
        return None
    return payload


def _encode(key: str, cubin: bytes) -> bytes:
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, _key_digest(key), len(cubin), hashlib.sha256(cubin).digest()
    )
    return header + cubin


def _decode(data: bytes, key: str) -> tuple[bytes, None] | tuple[None, str]:
    """(payload, None) for a sound entry of `key`, else (None, what is wrong with it)."""
    if len(data) < _HEADER.size:
        return None, f"truncated: {len(data)} bytes, header alone is {_HEADER.size}"
    magic, version, key_digest, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        return None, "not an nvfuse cache file"
    if version != FORMAT_VERSION:
        return None, f"format version {version}, expected {FORMAT_VERSION}"
    if key_digest != _key_digest(key):
        return None, "entry belongs to a different key"
    payload = data[_HEADER.size :]
    if len(payload) != length:
        return None, f"payload is {len(payload)} bytes, header says {length}"
    if hashlib.sha256(payload).digest() != digest:
        return None, "payload checksum mismatch"
    return payload, None


def _write_entry(cache_dir: str, path: str, key: str, cubin: bytes) -> None:
    """Publish the entry atomically; on any OS error fall back to memory-only for cache_dir."""
    tmp: str | None = None
    try:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # The temp file lives in the final directory so os.replace is a same-filesystem rename.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key[:16]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(_encode(key, cubin))
        # No fsync: a torn file after a power loss fails the checksum and is rebuilt, which is
        # cheaper than an fsync on every compile.
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        with _lock:
            _broken_dirs.add(cache_dir)
        _report(
            cache_dir,
            f"nvfuse: cannot write the cubin disk cache {cache_dir} ({e}); "
            "caching compiled kernels in memory only (set NVFUSE_CACHE_DIR or NVFUSE_CACHE=0)",
        )
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def _report(what: str, message: str) -> None:
    with _lock:
        if what in _reported:
            return
        _reported.add(what)
    # stacklevel 5: _report <- _read/_write_entry <- _from_disk_or_nvrtc <- compile_source <- caller
    warnings.warn(message, RuntimeWarning, stacklevel=5)


# -- names and dumps -------------------------------------------------------------------------


def _kernel_name(src: str, key: str) -> str:
    m = _KERNEL_NAME.search(src)
    return m.group(1) if m else f"kernel_{key[:12]}"


def _ptx_text(src: str, arch: str, name: str, key: str) -> str:
    text = _ptx.get(key)
    if text is None:
        # Only when dumping: a second NVRTC run, never part of the normal compile path.
        text = nvrtc.compile_to_ptx(src, arch, f"{name}.cu")
        with _lock:
            _ptx[key] = text
    return text
