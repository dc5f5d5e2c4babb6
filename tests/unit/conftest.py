from __future__ import annotations

import pytest

from tests.unit.example_cluster import located_ports


@pytest.fixture
def all_located() -> dict[tuple[str, str], int]:
    return located_ports()
