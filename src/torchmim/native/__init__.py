"""Fused CPU kernels for the inference of small MLPs, compiled on first use (issue 11).

The paper's toy experiments evaluate a one-hidden-layer MLP decoder (2 → width → 4) on 10⁷ (x, z)
pairs per model in the IS-NLL; torch runs it as three passes over a (pairs × width) activation
and takes ~1 ns per pair and hidden unit on the benchmark machine. ``kernels.c`` runs the whole
network on a tile of 16 rows held in vector registers, fuses a narrow output layer into the last
hidden one, and can evaluate the diagonal Gaussian's log-density of the target in the same pass
(the MLP 2.3–2.7× and the toy IS-NLL 1.9–2.4× faster, ``bench/toy_fast_paths.py --only
native``). Equal to torch's ops up to float rounding (tests/test_native.py); used by :class:`~torchmim.networks.MLP` without autograd and
by :class:`~torchmim.distributions.conditional.ConditionalGaussian`'s ``tiled_log_prob`` (the
IS-NLL), where ``FAST_PATHS.native_kernels`` is on (the default). :func:`group_mlp_forward` and
:func:`group_mlp_backward` run a vectorised group's stacked one-hidden-layer MLPs in training
(forward, and the closed-form backward with the hidden activations recomputed), through
:func:`~torchmim.networks.native_group_mlp`.

Plain C without torch headers, compiled with the system's C compiler (``$CC``, else ``cc``) in well
under a second and loaded with :mod:`ctypes`; cached in ``$TORCHMIM_CACHE_DIR`` (default
``$XDG_CACHE_HOME/torchmim`` or ``~/.cache/torchmim``; it must be owned by the user and not
writable by group or others, as compiled code is loaded from it) under a name hashed from the source, the
compiler, the flags and the CPU's feature flags (``-march=native`` code runs only where it was
built), written atomically (compiled to a temporary file, then renamed), so concurrent processes
can share the cache. Where nothing compiles (no compiler, ``TORCHMIM_NATIVE=0``), :func:`available`
is False, :func:`unavailable_reason` says why, and every caller takes torch's path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["ACTIVATION_CODES", "FUSED_MAX_OUTPUTS", "GROUP_MAX_INPUTS", "GROUP_MAX_OUTPUTS",
           "available", "group_mlp_backward", "group_mlp_forward", "mlp_forward",
           "mlp_gaussian_log_prob", "unavailable_reason"]

_log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("kernels.c")

#: Activation after a layer, as the kernel numbers them.
ACTIVATION_CODES = {"none": 0, "sigmoid": 1, "silu": 2, "relu": 3}
#: Widest output layer that the kernel fuses into the last hidden one (4 or 8 columns).
FUSED_MAX_OUTPUTS = 8
#: Widest input and output of the stacked MLPs of :func:`group_mlp_forward` / ``_backward``.
GROUP_MAX_INPUTS, GROUP_MAX_OUTPUTS = 4, 8
#: Rows per thread below which a call is not split across threads.
_MIN_ROWS_PER_THREAD = 4096

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_reason: str | None = None  # why there is no library; None while not tried or when loaded
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool)

# flag sets tried in order: x86 GCC/Clang, then Arm Clang (-mcpu), then portable code
_FLAG_SETS = (["-march=native", "-mprefer-vector-width=512"], ["-march=native"], ["-mcpu=native"],
              [])
_COMMON_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math"]


def _cache_dir() -> Path:
    root = os.environ.get("TORCHMIM_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "torchmim"


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), else the machine name: part of the cache key."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compile(cc: str, flags: list[str], out: Path) -> str | None:
    """Compile the kernels into ``out`` atomically; None on success, else the compiler's error."""
    try:  # the folder exists (_build_and_load made it)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.stem + ".", suffix=".tmp")
        os.close(fd)
    except OSError as e:  # a cache folder this user cannot write: torch's ops
        return f"cannot write the cache {out.parent}: {e}"
    try:
        proc = subprocess.run([cc, *_COMMON_FLAGS, *flags, "-o", tmp, str(_SOURCE)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or ["failed"])[-1]
        os.replace(tmp, out)
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _target_macros(cc: str, flags: list[str]) -> str:
    """The compiler's predefined macros for ``flags`` (``-march=native`` expands to the CPU's
    instruction sets): part of the cache key, so a library built for another CPU is never
    loaded from a shared cache; '' where the compiler cannot list them."""
    try:
        return subprocess.run([cc, *flags, "-E", "-dM", "-x", "c", os.devnull],
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _load() -> ctypes.CDLL | None:
    global _lib, _reason
    if _lib is not None or _reason is not None:
        return _lib
    with _lock:
        if _lib is not None or _reason is not None:
            return _lib
        try:
            _lib, _reason = _build_and_load()
        except Exception as e:  # noqa: BLE001  never an error from inference: torch's ops run
            _lib, _reason = None, f"{type(e).__name__}: {e}"
        if _reason is not None:
            _log.info("torchmim.native: %s; using torch's ops", _reason)
        return _lib


def _build_and_load() -> tuple[ctypes.CDLL | None, str | None]:
    if os.environ.get("TORCHMIM_NATIVE", "1") == "0":
        return None, "disabled by TORCHMIM_NATIVE=0"
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None, f"no C compiler ({os.environ.get('CC', 'cc')!r} not found)"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"C compiler {cc} does not run: {e}"
    source = _SOURCE.read_text()
    cache = _cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        return None, f"cannot write the cache {cache}: {e}"
    if hasattr(os, "getuid"):  # a library is loaded into this process: only from a private folder
        st = cache.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None, (f"the cache {cache} is not private to this user (owner or group/world "
                          "write permission): not loading compiled code from it")
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256("\0".join([source, cc, version, *_COMMON_FLAGS, *flags, _cpu_flags(),
                                        _target_macros(cc, flags)]).encode()).hexdigest()[:16]
        path = cache / f"native-{key}.so"
        for attempt in range(2):  # a cached file that does not load is rebuilt once
            if attempt or not path.exists():
                error = _compile(cc, flags, path)
                if error is not None:
                    errors.append(f"{' '.join(flags) or 'default flags'}: {error}")
                    break
            try:
                lib = ctypes.CDLL(str(path))
                lib.tm_mlp.restype = ctypes.c_int
                lib.tm_group_mlp_forward.restype = None
                lib.tm_group_mlp_backward.restype = ctypes.c_int
                return lib, None
            except (OSError, AttributeError) as e:
                if attempt:
                    errors.append(str(e))
    return None, "the kernels did not compile: " + "; ".join(errors)


def available() -> bool:
    """Whether the kernels are compiled and loaded (compiles them on the first call)."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (None when it is True)."""
    _load()
    return _reason


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1] != threads:
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="torchmim"))
    return _pool[2]


def _parallel(call, n: int, most: int, align: int = 1) -> list:
    """``call(start, stop)`` over ``range(n)``, split into up to ``most`` (and torch's threads)
    parts of a multiple of ``align``, run on the pool (ctypes releases the GIL); the results."""
    threads = max(1, min(torch.get_num_threads(), most))
    if threads == 1:
        return [call(0, n)]
    step = -(-n // threads)
    step += -step % align
    pool = _executor(threads)
    jobs = [pool.submit(call, s, min(n, s + step)) for s in range(0, n, step)]
    try:
        return [j.result() for j in jobs]
    finally:  # an interrupt must not unwind the caller's frame, freeing the tensors (weights,
        # target...) that running kernels still read, before they finish
        futures.wait(jobs)


_Layers = Sequence[tuple[Tensor, Tensor, int]]


def _on_cpu(t: Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


def _check(layers: _Layers, x: Tensor, target: Tensor | None) -> None:
    if not _on_cpu(x) or x.dim() != 2 or (target is not None and (not _on_cpu(target)
                                                                 or target.dim() != 2)):
        raise ValueError("the native kernels take 2-D float32 CPU tensors")
    width = x.shape[1]
    for w, b, _ in layers:
        if (not _on_cpu(w) or not _on_cpu(b) or w.dim() != 2 or w.shape[1] != width
                or b.shape != (w.shape[0],)):
            raise ValueError("the native kernels take float32 CPU (weight, bias) layers that "
                             "chain")
        width = w.shape[0]
    if layers[-1][2] != ACTIVATION_CODES["none"]:
        raise ValueError("the native kernels take no activation after the output layer")


def _run(layers: _Layers, x: Tensor, out: Tensor, target: Tensor | None,
         gaussian: tuple[float, bool, float, float]) -> Tensor:
    lib = _load()
    assert lib is not None, "call available() first"
    _check(layers, x, target)
    ws = [w.detach().contiguous() for w, _, _ in layers]
    bs = [b.detach().contiguous() for _, b, _ in layers]
    n_layers = len(layers)
    dims = [x.shape[1]] + [w.shape[0] for w in ws]
    dp = next((p for p in (4, 8) if dims[-1] <= p), 0) if n_layers >= 2 else 0
    if dp:  # the output layer transposed and zero-padded to dp columns, for the fused kernel
        ct = ws[-1].new_zeros(dims[-2], dp)
        ct[:, :dims[-1]] = ws[-1].t()
        cb = bs[-1].new_zeros(dp)
        cb[:dims[-1]] = bs[-1]
    else:
        ct = cb = ws[-1]  # unused
    x = x.contiguous()
    c_dims = (ctypes.c_int * (n_layers + 1))(*dims)
    c_w = (ctypes.c_void_p * n_layers)(*[w.data_ptr() for w in ws])
    c_b = (ctypes.c_void_p * n_layers)(*[b.data_ptr() for b in bs])
    c_act = (ctypes.c_int * n_layers)(*[a for _, _, a in layers])
    t_ptr = target.data_ptr() if target is not None else None
    period = target.shape[0] if target is not None else 1
    std_floor, clamp, lo, hi = gaussian
    width = out.shape[1] if out.dim() == 2 else 1

    def call(start: int, stop: int) -> int:
        return lib.tm_mlp(ctypes.c_long(stop - start), n_layers, c_dims, c_w, c_b, c_act,
                          ctypes.c_void_p(ct.data_ptr()), ctypes.c_void_p(cb.data_ptr()), dp,
                          ctypes.c_void_p(x.data_ptr() + 4 * start * dims[0]),
                          ctypes.c_void_p(out.data_ptr() + 4 * start * width),
                          ctypes.c_void_p(t_ptr), ctypes.c_long(period),
                          ctypes.c_float(std_floor), int(clamp), ctypes.c_float(lo),
                          ctypes.c_float(hi))

    rows = x.shape[0]
    # each row's result is the same in any split, but a call numbers its rows from 0 for the
    # target's period: split on multiples of the period
    codes = _parallel(call, rows, rows // _MIN_ROWS_PER_THREAD, period if target is not None else 1)
    if any(codes):
        raise (MemoryError("torchmim.native: out of memory for a kernel's tile buffers")
               if 1 in codes else ValueError("torchmim.native: unknown activation code"))
    return out


def mlp_forward(layers: _Layers, x: Tensor) -> Tensor:
    """The MLP ``h ← act(h Wᵀ + b)`` over ``layers`` = [(W, b, activation code), ...] on the rows of
    ``x`` (2-D, float32, CPU), without autograd. Requires :func:`available`."""
    out = x.new_empty((x.shape[0], layers[-1][0].shape[0]))
    return _run(layers, x, out, None, (0.0, False, 0.0, 0.0))


def mlp_gaussian_log_prob(layers: _Layers, context: Tensor, target: Tensor, *,
                          std_floor: float, logvar_clamp: tuple[float, float] | None) -> Tensor:
    """log N(target[i mod n]; μ_i, diag σ_i²) per row i of ``context``, where the MLP maps
    context_i to [μ_i, log σ_i²] and σ = exp(½·clamp(log σ²)) + ``std_floor`` (the likelihood of
    :func:`~torchmim.distributions.conditional.gaussian_from_mean_logvar`); n = ``len(target)``
    must divide ``len(context)``. Without autograd; requires :func:`available`."""
    rows, n = context.shape[0], target.shape[0]
    if target.dim() != 2:
        raise ValueError("mlp_gaussian_log_prob: the target must be 2-D (points × dimensions)")
    if n == 0 or rows % n or layers[-1][0].shape[0] != 2 * target.shape[1]:
        raise ValueError("mlp_gaussian_log_prob: the target rows must tile the context rows and "
                         "the MLP must output a mean and a log-variance per target dimension")
    target = target.to(torch.float32).contiguous()
    out = context.new_empty((rows,))
    lo, hi = logvar_clamp if logvar_clamp is not None else (0.0, 0.0)
    return _run(layers, context, out, target, (std_floor, logvar_clamp is not None, lo, hi))


def _check_group(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> tuple[int, int, int, int, int]:
    m, rows, n_in = x.shape if x.dim() == 3 else (0, 0, 0)
    h, n_out = w1.shape[1] if w1.dim() == 3 else 0, w2.shape[1] if w2.dim() == 3 else 0
    if (not all(_on_cpu(t) for t in (x, w1, b1, w2)) or x.dim() != 3
            or w1.shape != (m, h, n_in) or b1.shape != (m, h) or w2.shape != (m, n_out, h)
            or not (1 <= n_in <= GROUP_MAX_INPUTS and 1 <= n_out <= GROUP_MAX_OUTPUTS)):
        raise ValueError("group_mlp: float32 CPU tensors x (M, B, I), w1 (M, H, I), b1 (M, H), "
                         f"w2 (M, O, H) with I <= {GROUP_MAX_INPUTS} and O <= {GROUP_MAX_OUTPUTS}")
    return m, rows, n_in, h, n_out


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def group_mlp_forward(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """y = σ(x W₁ᵀ + b₁) W₂ᵀ + b₂ for M stacked members (σ the logistic sigmoid): x (M, B, I),
    w1 (M, H, I), b1 (M, H), w2 (M, O, H), b2 (M, O) → y (M, B, O); float32 CPU tensors,
    I ≤ ``GROUP_MAX_INPUTS``, O ≤ ``GROUP_MAX_OUTPUTS``. No autograd (see
    :func:`group_mlp_backward`); requires :func:`available`."""
    lib = _load()
    assert lib is not None, "call available() first"
    m, rows, n_in, h, n_out = _check_group(x, w1, b1, w2)
    if b2.shape != (m, n_out) or not _on_cpu(b2):
        raise ValueError("group_mlp: b2 must be a float32 CPU tensor (M, O)")
    x, w1, b1, w2, b2 = (t.detach().contiguous() for t in (x, w1, b1, w2, b2))
    y = x.new_empty((m, rows, n_out))
    _parallel(lambda m0, m1: lib.tm_group_mlp_forward(
        ctypes.c_long(m0), ctypes.c_long(m1), ctypes.c_long(rows), n_in, h, n_out, _ptr(x),
        _ptr(w1), _ptr(b1), _ptr(w2), _ptr(b2), _ptr(y)), m, m)
    return y


def group_mlp_backward(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, dy: Tensor, *,
                       input_grad: bool = True) -> tuple[Tensor | None, Tensor, Tensor, Tensor,
                                                         Tensor]:
    """The gradients (dx, dw1, db1, dw2, db2) of :func:`group_mlp_forward` given dy (M, B, O),
    the hidden activations recomputed; dx is None unless ``input_grad``. Requires
    :func:`available`."""
    lib = _load()
    assert lib is not None, "call available() first"
    m, rows, n_in, h, n_out = _check_group(x, w1, b1, w2)
    if dy.shape != (m, rows, n_out) or not _on_cpu(dy):
        raise ValueError("group_mlp: dy must be a float32 CPU tensor (M, B, O)")
    x, w1, b1, w2, dy = (t.detach().contiguous() for t in (x, w1, b1, w2, dy))
    dx = x.new_empty(x.shape) if input_grad else None
    dw1, db1, dw2 = x.new_empty(w1.shape), x.new_empty(b1.shape), x.new_empty(w2.shape)
    db2 = x.new_empty((m, n_out))
    codes = _parallel(lambda m0, m1: lib.tm_group_mlp_backward(
        ctypes.c_long(m0), ctypes.c_long(m1), ctypes.c_long(rows), n_in, h, n_out, _ptr(x),
        _ptr(w1), _ptr(b1), _ptr(w2), _ptr(dy), _ptr(dx), _ptr(dw1), _ptr(db1), _ptr(dw2),
        _ptr(db2)), m, m)
    if any(codes):
        raise MemoryError("torchmim.native: out of memory for the group backward's buffers")
    return dx, dw1, db1, dw2, db2

