"""Zoe Panel: a control panel for llama.cpp engines on Jetson boards and Linux hosts."""

__version__ = "0.1.0"
