"""Run a user's LLM provider class once, in a process of its own (``client_check`` starts it):

    python -m zoe_panel.handoff.client_child FILE.py CLASS|- BASE_URL PROMPT LIMIT_S

It imports the module from its path, builds the class with the base URL it is given (as
``cls(base_url=...)``, ``cls(url)`` or ``cls()``), awaits ``generate(prompt)`` and drains
``generate_stream(prompt)``, each within LIMIT_S, and prints one JSON line: what came back and
what was raised. Nothing of the user's code runs in the panel's own process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any


def load_class(path: Path, name: str) -> type:
    spec = importlib.util.spec_from_file_location(f"zoe_client_under_test_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name and name != "-":
        return getattr(module, name)  # type: ignore[no-any-return]
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and obj.__module__ == module.__name__
        and callable(getattr(obj, "generate", None))
        and callable(getattr(obj, "generate_stream", None))
        and not inspect.isabstract(obj)
    ]
    if not found:
        raise LookupError(f"{path.name} has no class with generate() and generate_stream(); name one with --class")
    found.sort(key=lambda c: ("provider" not in c.__name__.lower(), c.__name__))
    return found[0]


def construct(cls: type, base_url: str) -> Any:
    errors = []
    for args, kwargs in (((), {"base_url": base_url}), ((base_url,), {}), ((), {})):
        try:
            return cls(*args, **kwargs)
        except TypeError as e:
            errors.append(str(e))
    raise TypeError(f"cannot build {cls.__name__} with a base URL: {'; '.join(errors)}")


def _error(e: BaseException, t0: float) -> dict[str, Any]:
    return {"ok": False, "error": type(e).__name__, "message": str(e)[:400], "s": round(time.monotonic() - t0, 2)}


async def run(obj: Any, prompt: str, limit_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        text = await asyncio.wait_for(obj.generate(prompt), limit_s)
        out["generate"] = {"ok": True, "type": type(text).__name__, "chars": len(text or ""), "text": str(text)[:300]}
    except BaseException as e:  # noqa: BLE001 - whatever the client raises is the finding
        out["generate"] = _error(e, t0)
    out["generate"]["s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    chunks: list[Any] = []

    async def drain() -> None:
        stream = obj.generate_stream(prompt)
        if inspect.isawaitable(stream):  # "async def" returning a generator
            stream = await stream
        async for chunk in stream:
            chunks.append(chunk)

    try:
        await asyncio.wait_for(drain(), limit_s)
        texts = [c for c in chunks if isinstance(c, str)]
        out["stream"] = {
            "ok": True,
            "chunks": len(chunks),
            "empty": sum(1 for c in chunks if not c),
            "chars": sum(len(t) for t in texts),
            "types": sorted({type(c).__name__ for c in chunks}),
            "text": "".join(texts)[:300],
        }
    except BaseException as e:  # noqa: BLE001
        out["stream"] = {**_error(e, t0), "chunks": len(chunks)}
    out["stream"]["s"] = round(time.monotonic() - t0, 2)
    return out


def main(argv: list[str]) -> int:
    path, name, base, prompt, limit = Path(argv[0]), argv[1], argv[2], argv[3], float(argv[4])
    try:
        obj = construct(load_class(path, name), base)
    except BaseException as e:  # noqa: BLE001
        print(json.dumps({"load": {"ok": False, "error": type(e).__name__, "message": str(e)[:400]}}))
        return 0
    result = {"load": {"ok": True, "class": type(obj).__name__}, **asyncio.run(run(obj, prompt, limit))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
