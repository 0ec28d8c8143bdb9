"""SI unit helpers.

Every quantity inside kvfabric is a float in SI base units: seconds, bytes, bytes per second,
FLOP per second. These helpers convert *into* SI at the edges (catalogs, TOML, CLI) and back out
for display; model code never multiplies by 1e-3 by hand.

Decimal prefixes (KB, MB, GB, TB) are powers of 1000; binary ones (KiB, MiB, GiB) powers of 1024.
Network rates in bits per second (Gbps) are divided by 8 to give bytes per second.
"""

from __future__ import annotations

#: The largest size (a count of tokens, blocks, heads, bytes, GPUs) the edges accept from a
#: user (`kvfabric kernel`, `predict`, predict sweeps): far past any cluster, and small enough
#: that products of a few such sizes stay finite in a double (no time of inf or nan, no
#: invalid JSON).
LARGEST_SIZE = 1e15

# -- bytes -----------------------------------------------------------------------------------

def KB(x: float) -> float:
    """Kilobytes (1e3 B) → bytes."""
    return float(x) * 1e3


def MB(x: float) -> float:
    """Megabytes (1e6 B) → bytes."""
    return float(x) * 1e6


def GB(x: float) -> float:
    """Gigabytes (1e9 B) → bytes."""
    return float(x) * 1e9


def TB(x: float) -> float:
    """Terabytes (1e12 B) → bytes."""
    return float(x) * 1e12


def KiB(x: float) -> float:
    """Kibibytes (1024 B) → bytes."""
    return float(x) * 1024.0


def MiB(x: float) -> float:
    """Mebibytes (1024² B) → bytes."""
    return float(x) * 1024.0**2


def GiB(x: float) -> float:
    """Gibibytes (1024³ B) → bytes."""
    return float(x) * 1024.0**3


# -- rates -----------------------------------------------------------------------------------

def GBps(x: float) -> float:
    """Gigabytes per second → bytes per second."""
    return float(x) * 1e9


def TBps(x: float) -> float:
    """Terabytes per second → bytes per second."""
    return float(x) * 1e12


def Gbps(x: float) -> float:
    """Gigabits per second (network line rate) → bytes per second."""
    return float(x) * 1e9 / 8.0


def TFLOPS(x: float) -> float:
    """Tera-FLOP per second → FLOP per second."""
    return float(x) * 1e12


def PFLOPS(x: float) -> float:
    """Peta-FLOP per second → FLOP per second."""
    return float(x) * 1e15


# -- time ------------------------------------------------------------------------------------

def ns(x: float) -> float:
    """Nanoseconds → seconds."""
    return float(x) * 1e-9


def us(x: float) -> float:
    """Microseconds → seconds."""
    return float(x) * 1e-6


def ms(x: float) -> float:
    """Milliseconds → seconds."""
    return float(x) * 1e-3


# -- display (SI → human) --------------------------------------------------------------------

def to_us(seconds: float) -> float:
    """Seconds → microseconds, for display."""
    return seconds * 1e6


def to_ms(seconds: float) -> float:
    """Seconds → milliseconds, for display."""
    return seconds * 1e3


def to_GBps(bytes_per_s: float) -> float:
    """Bytes per second → GB/s, for display."""
    return bytes_per_s / 1e9


def fmt_time(seconds: float) -> str:
    """A duration in the most readable unit (ns, µs, ms or s)."""
    a = abs(seconds)
    if a == 0:
        return "0 s"
    if a < 1e-6:
        return f"{seconds * 1e9:.3g} ns"
    if a < 1e-3:
        return f"{seconds * 1e6:.4g} µs"
    if a < 1.0:
        return f"{seconds * 1e3:.4g} ms"
    return f"{seconds:.4g} s"


def fmt_bytes(nbytes: float) -> str:
    """A size in the most readable decimal unit (B, KB, MB, GB, TB)."""
    a = abs(nbytes)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if a >= scale:
            return f"{nbytes / scale:.4g} {unit}"
    return f"{nbytes:.4g} B"


def fmt_rate(bytes_per_s: float) -> str:
    """A bandwidth in GB/s (decimal)."""
    return f"{bytes_per_s / 1e9:.4g} GB/s"
