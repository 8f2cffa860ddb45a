"""Shared phantom fixtures: small cases generated once per session."""

from __future__ import annotations

import pytest

from procto.phantom import make_case

SMALL = (32, 96, 96)


@pytest.fixture(scope="session")
def small_cases():
    """(modality, seed, t_stage) → case, generated lazily and cached for the session."""
    cache: dict = {}

    def get(modality: str, seed: int, t_stage: str | None = None, **options):
        key = (modality, seed, t_stage, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = make_case(seed, modality, shape=options.pop("shape", SMALL), t_stage=t_stage, **options)
        return cache[key]

    return get
