"""Benchmark: how argon2id scales across this machine's cores, at each of OWASP's equal-strength
parameter sets (m=46/19/12/9/7 MiB with t=1/2/3/4/5, p=1), Streamward's own (19 MiB, t=2) among them.

For each set: one hash on its own (the median of a few), then hashes on every core at once (one
thread per core, as the server's hashing pool) with nothing else running, as a share of
cores / t_hash. That share is the ceiling of the logins' ratio in ``bench/run.py`` (logins per second
against cores / t_hash): the logins cannot go faster than hashing alone. Below 1 when concurrent
hashes slow each other down (their working sets share the last-level cache and the memory bus); a
share just over 1 is the noise of timing one hash and then many, seconds apart.

    .venv/bin/python bench/argon2_sets.py [--hashes 120] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from argon2 import PasswordHasher

RESULTS = Path(__file__).resolve().parent / "results"

# (MiB, passes): OWASP's Password Storage Cheat Sheet lists these as equal defence for argon2id.
SETS = ((46, 1), (19, 2), (12, 3), (9, 4), (7, 5))
OURS = (19, 2)


def one_hash_seconds(hasher: PasswordHasher, times: int = 9) -> float:
    measured = []
    for _ in range(times):
        start = time.perf_counter()
        hasher.hash("bench password")
        measured.append(time.perf_counter() - start)
    return statistics.median(measured)


def every_core_rate(hasher: PasswordHasher, hashes: int, cores: int) -> float:
    with ThreadPoolExecutor(cores) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: hasher.hash("bench password"), range(hashes)))
        return hashes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hashes", type=int, default=120, help="hashes per all-cores run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; per set: one hash (ms), every core hashing (per s), that / (cores / t_hash)")
    results: dict[str, list[dict[str, float]]] = {}
    for round_ in range(1, args.rounds + 1):
        for memory_mib, passes in SETS:
            hasher = PasswordHasher(
                time_cost=passes, memory_cost=memory_mib * 1024, parallelism=1, hash_len=32, salt_len=16
            )
            t_hash = one_hash_seconds(hasher)
            rate = every_core_rate(hasher, args.hashes, cores)
            ratio = rate / (cores / t_hash)
            results.setdefault(f"m={memory_mib}MiB,t={passes}", []).append(
                {"t_hash_ms": round(t_hash * 1000, 2), "per_second": round(rate, 1), "ratio": round(ratio, 3)}
            )
            mark = "  (Streamward's)" if (memory_mib, passes) == OURS else ""
            print(
                f"round {round_}  m={memory_mib:>2} MiB t={passes}: {t_hash * 1000:6.1f} ms"
                f"  {rate:6.1f}/s  {ratio:.3f}{mark}"
            )

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "argon2_sets.json"
    out.write_text(json.dumps({"cores": cores, "sets": results}, indent=2) + "\n")
    print(f"written to {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
