"""Handing the engine to the Zoe assistant: a generated drop-in provider, and a check of the
user's own client against the running engine."""
