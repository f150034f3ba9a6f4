"""``genqueue fake-pixellab``: run the fake PixelLab API in the foreground."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from genqueue.errors import ConfigError


def fake_pixellab(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="Interface (loopback only unless --public).")
    ] = "127.0.0.1",
    preset: Annotated[
        str, typer.Option("--preset", help="fast, realistic or demo (with faults).")
    ] = "fast",
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="Bearer token to accept (default: the documented fake token)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of latencies and of the demo faults.")
    ] = 0,
    public: Annotated[bool, typer.Option("--public", help="Allow a non-loopback --host.")] = False,
) -> None:
    """Serve a fake PixelLab v2 API until Ctrl-C.

    Point PIXELLAB_BASE_URL at it; its statistics are at /_fake/stats.
    """
    from genqueue.providers.fake_pixellab import DEFAULT_TOKEN, FakeOptions, FakePixelLab

    tokens = {token or DEFAULT_TOKEN: "cli"}
    presets = {
        "fast": lambda: FakeOptions(tokens=tokens, seed=seed),
        "realistic": lambda: FakeOptions.realistic(tokens=tokens, seed=seed),
        "demo": lambda: FakeOptions.demo(seed=seed, tokens=tokens),
    }
    if preset not in presets:
        raise ConfigError(f"unknown --preset {preset!r}: use fast, realistic or demo")
    try:
        fake = FakePixelLab(presets[preset](), host=host, port=port, allow_non_loopback=public)
        fake.start()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc}") from exc
    typer.echo(
        f"fake PixelLab on {fake.base_url} ({preset}); "
        f"export PIXELLAB_BASE_URL={fake.base_url} PIXELLAB_API_KEY=<your --token or the fake's>; "
        f"stats: {fake.root_url}/_fake/stats; Ctrl-C to stop",
        err=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
