"""llama.cpp's server in a process of its own: `python -m kb.ml.llamacpp_child`, started by kb.ml.llamacpp_server.

A fault in llama.cpp's native code ends this process and not kb's. One did: a build of llama.cpp whose AMX
kernels died of a general protection fault at model load took `kb serve` down with it, searches, uploads and
the admin included. Here the parent sees the child exit, answers 503 for the chat model, and loads it again on
the next request.

The conversation with the parent, which already talks to llama.cpp over a private unix socket:
- stdin, one JSON line: the model file, context, slots, threads, the socket path and its API key (kept off
  the command line, where `ps` would show it);
- stdout, one JSON line: `{"ready": true}` once the model is loaded, or `{"error": "..."}`;
- then it serves until stdin ends, which is when the parent closes it or dies, however it died.
"""

from __future__ import annotations

import json
import os
import sys


def server_params(spec: dict):
    """llama.cpp's settings for the parent's spec."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = spec["gguf"]
    params.n_parallel = spec["slots"]
    params.n_ctx = spec["context_per_slot"] * spec["slots"]  # llama.cpp splits n_ctx between the slots
    params.n_batch = spec["prompt_batch"]
    params.cpuparams.n_threads = spec["threads"]
    params.cpuparams_batch.n_threads = spec["threads"]
    params.cache_prompt = True  # a repeated prefix (the system prompt and quotes) is not read again
    params.cache_ram_mib = spec["cache_ram_mib"]
    params.hostnames = [spec["socket"]]  # a host name ending in .sock means AF_UNIX
    params.api_keys = [spec["api_key"]]
    params.endpoint_slots = True  # busy_slots(): how many requests llama.cpp is working on
    params.ui = False
    params.verbosity = 0
    return params


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    # The answer goes on a copy of stdout; stdout itself then points at stderr, so that nothing llama.cpp prints
    # can fill a pipe the parent no longer reads.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import xllamacpp

    try:
        server = xllamacpp.Server(server_params(spec))
    except RuntimeError as exc:
        answer.write(json.dumps({"error": str(exc)}) + "\n")
        answer.close()
        return 2
    answer.write(json.dumps({"ready": True}) + "\n")
    answer.close()
    try:
        sys.stdin.read()
    except KeyboardInterrupt:  # Ctrl-C in the terminal reaches the whole process group
        pass
    del server  # its destructor stops llama.cpp's loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
