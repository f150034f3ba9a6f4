"""Checked by mypy in test_mypy.py (never imported or run): one typo it must catch."""

from __future__ import annotations

from pydantic import BaseModel

from genqueue import App, JobContext

app = App("memory://")


class GenerateRequest(BaseModel):
    prompt: str
    width: int = 64


@app.task("images.generate")
async def generate(ctx: JobContext[GenerateRequest]) -> dict[str, str]:
    size = ctx.data.width * 2  # typed: an int
    return {"prompt": ctx.data.promt, "size": str(size)}  # the typo: promt


@app.task("images.untyped")
async def untyped(ctx: JobContext) -> object:
    return ctx.data  # untyped tasks keep working: ctx.data is Any
