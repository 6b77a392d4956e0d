"""EngineSpec -> argv for llama-server and for llama-cpp-python's server. Pure functions.

Everything that changed default between llama.cpp builds is passed explicitly (REFERENCE.md §9):
model, ctx, GPU layers, host, port and slots. Flags that changed form (``-fa`` bare vs valued)
follow the binary's capabilities, read once from its ``--help``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from zoe_panel.engine.base import EngineSpec
from zoe_panel.errors import ConfigError

# ggml_type ids, as llama-cpp-python's --type_k/--type_v want them (ggml.h)
GGML_TYPE_IDS = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}

# Extra llama-server flags an operator may add, with how many values each takes. Flags the panel
# manages itself (model, ctx, host, port, slots, cache types, api key) and flags that read or write
# arbitrary files or reach the network (-hf, --model-url, --slot-save-path, --log-file, --path,
# --ssl-*) are not here on purpose.
EXTRA_FLAGS: dict[str, int] = {
    "--temp": 1,
    "--top-k": 1,
    "--top-p": 1,
    "--min-p": 1,
    "--repeat-penalty": 1,
    "--repeat-last-n": 1,
    "--presence-penalty": 1,
    "--frequency-penalty": 1,
    "--seed": 1,
    "-s": 1,
    "-n": 1,
    "--n-predict": 1,
    "--keep": 1,
    "--rope-scaling": 1,
    "--rope-scale": 1,
    "--rope-freq-base": 1,
    "--rope-freq-scale": 1,
    "--yarn-orig-ctx": 1,
    "--yarn-ext-factor": 1,
    "--yarn-attn-factor": 1,
    "--yarn-beta-slow": 1,
    "--yarn-beta-fast": 1,
    "-tb": 1,
    "--threads-batch": 1,
    "--prio": 1,
    "--poll": 1,
    "--numa": 1,
    "--mlock": 0,
    "--no-mmap": 0,
    "--mmap": 0,
    "-lm": 1,
    "--load-mode": 1,
    "--no-warmup": 0,
    "--cont-batching": 0,
    "--no-cont-batching": 0,
    "-cb": 0,
    "-nocb": 0,
    "--split-mode": 1,
    "-sm": 1,
    "--main-gpu": 1,
    "-mg": 1,
    "--tensor-split": 1,
    "-ts": 1,
    "--override-kv": 1,
    "--cache-reuse": 1,
    "--cache-ram": 1,
    "-cram": 1,
    "--jinja": 0,
    "--no-jinja": 0,
    "--chat-template": 1,
    "--reasoning-format": 1,
    "--reasoning-budget": 1,
    "--no-webui": 0,
    "--slots": 0,
    "--no-slots": 0,
    "--props": 0,
    "--timeout": 1,
    "-to": 1,
    "--threads-http": 1,
    "--ctx-checkpoints": 1,
    "--sleep-idle-seconds": 1,
    "--defrag-thold": 1,
    "-dt": 1,
    "--no-kv-offload": 0,
    "-nkvo": 0,
    "--fit": 1,
    "-fit": 1,
    "--fit-target": 1,
    "-fitt": 1,
    "--fit-ctx": 1,
    "-fitc": 1,
    "--no-op-offload": 0,
    "--spm-infill": 0,
    "--ctx-size-draft": 1,
    "--draft-max": 1,
    "--draft-min": 1,
    "--cpu-moe": 0,
    "--n-cpu-moe": 1,
    "-ncmoe": 1,
}
_VALUE_RE = re.compile(r"^[\w.,:=+\-/%]*$")
_LOAD_MODE_FLAGS = ("--mlock", "--mmap", "--no-mmap")
# A flag as --help lists it: at a line start or after ", " ("-c,    --ctx-size N").
_FLAG_RE = re.compile(r"(?:^|[\s,])(--?[A-Za-z][A-Za-z0-9-]*)", re.MULTILINE)


@dataclass(frozen=True)
class Capabilities:
    """What one llama-server binary understands, from its ``--help`` and ``--version``."""

    version: str = ""
    build: int | None = None
    commit: str = ""
    flash_attn_takes_value: bool = True
    has_kv_unified: bool = True
    has_log_jsonl: bool = True
    has_verbosity: bool = True
    slots_default_on: bool = True
    has_fit: bool = True
    # Every flag --help lists; empty when unknown (a cache written by an older panel). Flags come
    # and go between builds (--mlock became --load-mode mlock), so extra arguments are checked
    # against the binary that will run them, not only against the panel's allow-list.
    flags: tuple[str, ...] = ()
    # --spec-type's choices as --help lists them (ngram-simple, draft-simple, ...); empty: unknown
    spec_types: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        """From a cache entry; unknown keys (a newer panel's) are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["flags"] = tuple(kw.get("flags") or ())
        kw["spec_types"] = tuple(kw.get("spec_types") or ())
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_help(cls, help_text: str, version_text: str = "") -> Capabilities:
        """Parse ``--help`` and ``--version`` output (old: ``version: 4579 (abc1234)``,
        new: ``version: 0.5.0-dev (build 1, commit 0c1e570)``)."""
        ver = re.search(r"version:\s*(\S+)", version_text)
        version = ver.group(1) if ver else ""
        build_m = re.search(r"build\s+(\d+)", version_text)
        build = int(build_m.group(1)) if build_m else (int(version) if version.isdigit() else None)
        commit_m = re.search(r"commit\s+([0-9a-f]{6,40})", version_text) or re.search(
            r"\(([0-9a-f]{6,40})\)", version_text
        )
        return cls(
            version=version,
            build=build,
            commit=commit_m.group(1) if commit_m else "",
            flash_attn_takes_value=bool(re.search(r"--flash-attn\s*\[?on\|off", help_text)),
            has_kv_unified="--kv-unified" in help_text,
            has_log_jsonl="--log-jsonl" in help_text,
            has_verbosity="--log-verbosity" in help_text or "-lv," in help_text,
            slots_default_on="--no-slots" in help_text,
            has_fit="--fit " in help_text or "-fit," in help_text,
            flags=tuple(sorted(set(_FLAG_RE.findall(help_text)))),
            spec_types=_spec_types(help_text),
        )

    def supports(self, flag: str) -> bool:
        """Whether this binary lists ``flag`` in its --help (True when the help is unknown)."""
        return not self.flags or flag in self.flags

    def check_known(self, extra_args: tuple[str, ...] | list[str]) -> None:
        """Refuse extra flags this binary does not list in its --help (they would make it exit)."""
        if not self.flags:
            return
        for arg in extra_args:
            if not arg.startswith("-") or _is_number(arg):
                continue
            flag = arg.split("=", 1)[0]
            if flag not in self.flags:
                build = f" (version {self.version})" if self.version else ""
                raise ConfigError(
                    f"extra argument {flag} is not understood by this llama-server{build}: "
                    "llama.cpp renamed or removed it; see the engine's --help"
                    + (" (newer builds have --load-mode instead)" if flag in _LOAD_MODE_FLAGS else "")
                )


def check_extra_args(args: tuple[str, ...] | list[str], allowed: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """Validate operator-supplied extra flags against the allow-list (flag -> number of values;
    llama-server's unless another engine's is given); return them as a tuple."""
    allowed = EXTRA_FLAGS if allowed is None else allowed
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        flag = args[i]
        if "=" in flag and flag.startswith("--"):
            flag, value = flag.split("=", 1)
            values = [value]
            i += 1
        else:
            n = allowed.get(flag, -1)
            values = args[i + 1 : i + 1 + max(n, 0)]
            i += 1 + max(n, 0)
        arity = allowed.get(flag)
        if arity is None:
            raise ConfigError(
                f"extra argument {flag!r} is not allowed; the panel sets model, context, host, port, "
                "slots, cache types and API key itself, and flags that touch files or the network "
                "are refused"
            )
        if len(values) != arity:
            raise ConfigError(f"extra argument {flag} needs {arity} value(s)")
        for v in values:
            if not _VALUE_RE.match(v) or v.startswith("-") and not _is_number(v):
                raise ConfigError(f"extra argument {flag}: value {v!r} has characters that are not allowed")
        out.append(flag)
        out.extend(values)
    return tuple(out)


def _spec_types(help_text: str) -> tuple[str, ...]:
    m = re.search(r"--spec-type\s+([a-z0-9,-]+)", help_text)
    return tuple(t for t in m.group(1).split(",") if t) if m else ()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def llama_server_argv(binary: str, spec: EngineSpec, caps: Capabilities | None = None) -> list[str]:
    """argv for native (or containerised) llama-server."""
    caps = caps or Capabilities()
    argv = [
        binary,
        "-m",
        spec.model,
        "-c",
        str(spec.ctx),
        "-ngl",
        str(spec.n_gpu_layers),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "-np",
        str(spec.parallel),
        "-ctk",
        spec.cache_type_k,
        "-ctv",
        spec.cache_type_v,
        "-b",
        str(spec.batch),
        "-ub",
        str(spec.ubatch),
        "--metrics",
    ]
    if caps.has_kv_unified:
        argv.append("-kvu" if spec.kv_unified else "-no-kvu")
    if caps.flash_attn_takes_value:
        argv += ["-fa", spec.flash_attn]
    elif spec.flash_attn == "on" or spec.cache_type_v not in ("f16", "f32", "bf16"):
        argv.append("-fa")  # old builds: a bare switch, off unless given
    if not caps.slots_default_on:
        argv.append("--slots")
    if spec.threads:
        argv += ["-t", str(spec.threads)]
    if spec.swa_full:
        argv.append("--swa-full")
    if spec.alias:
        argv += ["-a", spec.alias]
    if spec.n_predict:
        argv += ["-n", str(spec.n_predict)]
    if spec.rpc:
        argv += ["--rpc", ",".join(spec.rpc)]
    if spec.tensor_split:
        argv += ["-ts", ",".join(f"{x:g}" for x in spec.tensor_split)]
    argv += speculative_args(spec, caps)
    argv += after_load_args(spec, caps)
    # -lv 4 prints the model/KV/compute buffer lines the load timeline is built from.
    if caps.has_verbosity:
        argv += ["-lv", "4"]
    else:
        argv.append("--verbose")
    extra = check_extra_args(spec.extra_args)
    caps.check_known(extra)
    argv += list(extra)
    return argv


def speculative_args(spec: EngineSpec, caps: Capabilities) -> list[str]:
    """Speculative decoding with this build's flag names (they changed upstream: ``--draft-max`` and
    ``-md`` became ``--spec-draft-n-max`` and ``--spec-draft-model``; n-gram modes came with
    ``--spec-type``). A mode the build lacks is refused here, before Start."""
    from zoe_panel.errors import ConfigError

    out: list[str] = []
    kind = spec.spec_type or ("draft-simple" if spec.draft_model else "")
    if not kind:
        return out
    if caps.supports("--spec-type"):
        offered = caps.spec_types
        for k in kind.split(","):
            if offered and k not in offered:
                raise ConfigError(f"this llama-server has no speculative type {k!r}; it offers {', '.join(offered)}")
        out += ["--spec-type", kind]
    elif not spec.draft_model:
        raise ConfigError("this llama-server predates n-gram speculative decoding (--spec-type): use a draft model")
    if spec.draft_model:
        out += ["-md", spec.draft_model]
        ngl_flag = "--spec-draft-ngl" if caps.supports("--spec-draft-ngl") else "-ngld"
        out += [ngl_flag, str(spec.n_gpu_layers)]
    if spec.draft_max:
        out += ["--spec-draft-n-max" if caps.supports("--spec-draft-n-max") else "--draft-max", str(spec.draft_max)]
    return out


def after_load_args(spec: EngineSpec, caps: Capabilities) -> list[str]:
    """The prompt cache cap and the context checkpoints, always explicit: upstream's defaults
    (8 GiB of cache, 32 checkpoints per slot) grow past READY into memory a 16 GB board lacks.
    Builds older than these flags (the r36.4.0 image) have neither feature, so nothing to cap."""
    out: list[str] = []
    if caps.supports("--cache-ram"):
        out += ["--cache-ram", str(spec.cache_ram_mib)]
    if caps.supports("--ctx-checkpoints"):
        out += ["--ctx-checkpoints", str(spec.ctx_checkpoints)]
    elif caps.supports("--swa-checkpoints"):
        out += ["--swa-checkpoints", str(spec.ctx_checkpoints)]
    return out


def llama_cpp_python_argv(python: str, spec: EngineSpec) -> list[str]:
    """argv for ``python -m llama_cpp.server`` (booleans need a value; types are ggml ids)."""
    if spec.extra_args:
        raise ConfigError("extra arguments are only supported with the llama-server flavour")
    argv = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        spec.model,
        "--n_ctx",
        str(spec.ctx),
        "--n_gpu_layers",
        str(-1 if spec.n_gpu_layers >= 999 else spec.n_gpu_layers),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--n_batch",
        str(spec.batch),
        "--n_ubatch",
        str(spec.ubatch),
        "--type_k",
        str(GGML_TYPE_IDS[spec.cache_type_k]),
        "--type_v",
        str(GGML_TYPE_IDS[spec.cache_type_v]),
        "--flash_attn",
        "false" if spec.flash_attn == "off" else "true",
        # A liveness poll would otherwise cut running streams short (REFERENCE.md §2).
        "--interrupt_requests",
        "false",
        "--verbose",
        "true",
    ]
    if spec.threads:
        argv += ["--n_threads", str(spec.threads)]
    if spec.alias:
        argv += ["--model_alias", spec.alias]
    if spec.api_key:
        argv += ["--api_key", spec.api_key]
    return argv
