"""PGMax side of ``bp_vs_pgmax.py``; runs inside PGMax's own virtual environment.

It never imports hybridpgm or torch.  It reads one JSON command per line on
stdin and answers one JSON line on stdout:

* ``{"cmd": "setup", "npz": path, "iters": K}``: build the Ising grid(s) stored in
  ``path`` (``J [B, E]``, ``h [B, H*W]``, ``side``), jit-compile one BP run of
  ``K`` sum-product steps without damping plus the marginals (``vmap`` over the
  batch), run it once; answers the compile time.
* ``{"cmd": "time"}``: one timed run (``block_until_ready``); answers seconds.
* ``{"cmd": "marginals", "out": path}``: writes ``[B, H*W, 2]`` marginals.

JAX is pinned to the CPU (``JAX_PLATFORMS=cpu``) and to one core: XLA's multi-threaded Eigen kernels are
turned off (``--xla_cpu_multi_thread_eigen=false``, an XLA ``DebugOptions`` flag, set in ``XLA_FLAGS`` before
JAX is imported), and, as XLA has no flag for the size of its CPU client's thread pool, the process's CPU
affinity is set to one core where the OS allows it (Linux), so that every thread XLA starts shares that core.
(The ``intra_op_parallelism_threads=1`` often copied next to the Eigen flag is a TensorFlow session option,
not an XLA flag: without leading dashes XLA skips it, with them it aborts.)  The core is reported by
``setup`` (``cpu_affinity``).  PGMax 0.6.1 calls
``jax.lib.xla_bridge.get_backend``, which newer JAX only has as
``jax.extend.backend.get_backend``; the shim below adds the old name for this
process only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
if hasattr(os, "sched_setaffinity"):  # before JAX starts its threads: they inherit the one core
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _shim_xla_bridge() -> None:
    lib = jax.lib
    bridge = getattr(lib, "xla_bridge", None)
    if bridge is not None and hasattr(bridge, "get_backend"):
        return
    from jax.extend import backend

    lib.xla_bridge = types.SimpleNamespace(get_backend=backend.get_backend)


_shim_xla_bridge()

from pgmax import fgraph, fgroup, infer, vgroup  # noqa: E402


def grid_edges(n: int):
    horiz = [((r, c), (r, c + 1)) for r in range(n) for c in range(n - 1)]
    vert = [((r, c), (r + 1, c)) for r in range(n - 1) for c in range(n)]
    return horiz + vert


class Runner:
    def setup(self, npz: str, iters: int) -> dict:
        data = np.load(npz)
        J, h, n = data["J"].astype(np.float32), data["h"].astype(np.float32), int(data["side"])
        variables = vgroup.NDVarArray(num_states=2, shape=(n, n))
        graph = fgraph.FactorGraph(variable_groups=variables)
        edges = grid_edges(n)
        pairs = fgroup.PairwiseFactorGroup(
            variables_for_factors=[[variables[a], variables[b]] for a, b in edges],
            log_potential_matrix=np.zeros((len(edges), 2, 2), dtype=np.float32))
        graph.add_factors(pairs)
        bp = infer.build_inferer(graph.bp_state, backend="bp")
        spin = np.array([-1.0, 1.0], dtype=np.float32)
        lp = J[:, :, None, None] * spin[:, None] * spin[None, :]          # [B, E, 2, 2]
        ev = (h[:, :, None] * spin).reshape(h.shape[0], n, n, 2)         # [B, n, n, 2]

        def one(lp, ev):
            arrays = bp.init(log_potentials_updates={pairs: lp}, evidence_updates={variables: ev})
            arrays = bp.run(arrays, num_iters=iters, damping=0.0, temperature=1.0)
            return infer.get_marginals(bp.get_beliefs(arrays))[variables]

        self.fn = jax.jit(jax.vmap(one))
        self.args = (jnp.asarray(lp), jnp.asarray(ev))
        t = time.perf_counter()
        self.fn(*self.args).block_until_ready()
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return {"compile_s": time.perf_counter() - t, "jax": jax.__version__, "cpu_affinity": affinity}

    def time(self) -> dict:
        t = time.perf_counter()
        self.fn(*self.args).block_until_ready()
        return {"seconds": time.perf_counter() - t}

    def marginals(self, out: str) -> dict:
        m = np.asarray(self.fn(*self.args))
        np.save(out, m.reshape(m.shape[0], -1, 2))
        return {"ok": True}


def main() -> None:
    runner = Runner()
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        try:
            reply = getattr(runner, cmd)(**msg)
        except Exception as e:  # answer instead of dying silently
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
