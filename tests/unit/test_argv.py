from pathlib import Path

import pytest

from zoe_panel.engine import flavors
from zoe_panel.engine.argv import (
    Capabilities,
    check_extra_args,
    llama_cpp_python_argv,
    llama_server_argv,
)
from zoe_panel.engine.base import EngineSpec
from zoe_panel.errors import ConfigError

DATA = Path(__file__).parent.parent / "data"
OLD_HELP = """
-fa,   --flash-attn                     enable Flash Attention (default: disabled)
-np,   --parallel N                     number of parallel sequences to decode (default: 1)
--slots                                 enable slots monitoring endpoint (default: disabled)
"""


def spec(**kw):  # type: ignore[no-untyped-def]
    return EngineSpec(model="/m/x.gguf", **kw)


def test_new_binary_gets_every_default_spelled_out() -> None:
    caps = Capabilities.from_help(
        (DATA / "llama-server-0c1e570-help.txt").read_text(), "version: 0.5.0-dev (build 1, commit 0c1e570)"
    )
    argv = llama_server_argv(
        "/bin/llama-server", spec(ctx=2048, port=9000, cache_type_k="q8_0", cache_type_v="q8_0"), caps
    )
    joined = " ".join(argv)
    for part in (
        "-m /m/x.gguf",
        "-c 2048",
        "-ngl 999",
        "--host 127.0.0.1",
        "--port 9000",
        "-np 4",
        "-ctk q8_0",
        "-ctv q8_0",
        "-fa auto",
        "-kvu",
        "-lv 4",
        "--metrics",
    ):
        assert part in joined
    assert "--slots" not in argv  # on by default in new builds
    assert caps.build == 1 and caps.commit == "0c1e570" and caps.flash_attn_takes_value


def test_old_binary_gets_bare_fa_and_slots() -> None:
    caps = Capabilities.from_help(OLD_HELP, "version: 4579 (3e23be79)")
    assert caps.build == 4579 and caps.commit == "3e23be79"
    argv = llama_server_argv("llama-server", spec(flash_attn="on", kv_unified=False), caps)
    i = argv.index("-fa")
    assert argv[i + 1].startswith("-")  # bare switch: the next item is another flag, not "on"
    assert "--slots" in argv and "-kvu" not in argv and "-no-kvu" not in argv


def test_old_binary_quantized_v_turns_flash_attention_on() -> None:
    caps = Capabilities.from_help(OLD_HELP, "")
    argv = llama_server_argv("llama-server", spec(cache_type_v="q4_0", flash_attn="auto"), caps)
    assert "-fa" in argv


def test_split_slots_when_not_unified() -> None:
    assert "-no-kvu" in llama_server_argv("s", spec(kv_unified=False, parallel=3))


def test_python_flavour_uses_snake_case_and_ggml_type_ids() -> None:
    argv = llama_cpp_python_argv(
        "/py", spec(flavor="llama-cpp-python", ctx=1024, cache_type_k="q8_0", n_gpu_layers=999)
    )
    joined = " ".join(argv)
    assert "-m llama_cpp.server" in joined
    assert "--n_ctx 1024" in joined and "--type_k 8" in joined and "--n_gpu_layers -1" in joined
    assert "--interrupt_requests false" in joined and "--flash_attn true" in joined


def test_api_key_travels_in_env_for_llama_server_not_argv() -> None:
    s = spec(api_key="sekret")
    assert "sekret" not in llama_server_argv("s", s)
    assert flavors.get("llama-server").env(s)["LLAMA_API_KEY"] == "sekret"


@pytest.mark.parametrize("args", [["--temp", "0.5"], ["--mlock"], ["--rope-scale=2"], ["-s", "-1"]])
def test_allowed_extra_args(args: list[str]) -> None:
    assert check_extra_args(args)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model-url", "http://x"], "not allowed"),
        (["-hf", "a/b"], "not allowed"),
        (["--slot-save-path", "/etc"], "not allowed"),
        (["--port", "1"], "not allowed"),
        (["--temp"], "needs 1 value"),
        (["--temp", "$(rm -rf /)"], "not allowed"),
    ],
)
def test_refused_extra_args(args: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_extra_args(args)


def test_spec_validation_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="needs flash attention"):
        spec(cache_type_v="q8_0", flash_attn="off")
    with pytest.raises(ConfigError, match="port 0"):
        spec(port=0)
    with pytest.raises(ConfigError, match="cache type 'q3'"):
        spec(cache_type_k="q3")


def test_extra_flags_are_checked_against_the_binarys_own_help() -> None:
    help_text = (DATA / "llama-server-0c1e570-help.txt").read_text()
    caps = Capabilities.from_help(help_text, "version: 0.5.0-dev (build 1, commit 0c1e570)")
    assert {"-c", "--ctx-size", "-lm", "--load-mode", "--no-warmup", "-kvu"} <= set(caps.flags)
    ok = llama_server_argv("s", spec(extra_args=("--load-mode", "mlock", "--seed", "-1")), caps)
    assert ok[-4:] == ["--load-mode", "mlock", "--seed", "-1"]
    # --mlock is on the panel's allow-list (older builds have it) but this build dropped it
    with pytest.raises(ConfigError, match=r"--mlock is not understood by this llama-server \(version 0.5.0-dev\)"):
        llama_server_argv("s", spec(extra_args=("--mlock",)), caps)
    with pytest.raises(ConfigError, match="--no-mmap .*--load-mode instead"):
        llama_server_argv("s", spec(extra_args=("--no-warmup", "--no-mmap")), caps)
    # a cache entry written before flags were recorded: no per-build check, the allow-list still holds
    old = Capabilities.from_dict({k: v for k, v in caps.to_dict().items() if k != "flags"} | {"future": 1})
    assert old.flags == () and "--mlock" in llama_server_argv("s", spec(extra_args=("--mlock",)), old)
    assert Capabilities.from_dict(caps.to_dict()) == caps
