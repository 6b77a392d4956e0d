"""Engine builds that are trusted only after they have decoded tokens on this machine.

``python -m zoe_panel.build llama-server`` compiles llama-server (and rpc-server) from the
llama.cpp vendored in the llama-cpp-python sdist, runs a smoke decode of the demo model, falls
back to a safer variant when the binary crashes (SIGILL on a CPU that lists instructions it then
traps), and records the choice per machine. ``llama-cpp-python`` does the same for the Python
flavour's wheel. Standard library only: it runs before the panel's requirements are installed and
on the GPU machine with nothing but python3.
"""
