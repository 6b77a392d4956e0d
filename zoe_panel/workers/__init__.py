"""RPC workers: llama.cpp's ``rpc-server`` on this machine or on other boards, so one model can be
split over several machines (``llama-server --rpc host:port,… --tensor-split …``).

``probe`` speaks the first words of the RPC protocol (hello, device count, device memory) to learn a
worker's version and free memory without llama-server; ``manager`` supervises local workers the way
the engine is supervised (pidfile, log, state from the world)."""
