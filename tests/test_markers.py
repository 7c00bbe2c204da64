"""Every test carries exactly one of the five markers of pytest.ini (tests/conftest.py assigns them), so
`-m "unit or host"` (`make test-fast`) and the other selections are well defined."""

from conftest import MARKERS


def test_the_markers_are_the_registered_ones(request):
    registered = {line.split(":")[0].strip() for line in request.config.getini("markers")}
    assert set(MARKERS) <= registered


def test_every_collected_test_has_exactly_one_marker(request):
    wrong = {}
    for item in request.session.items:
        names = sorted({mark.name for mark in item.iter_markers() if mark.name in MARKERS})
        if len(names) != 1:
            wrong[item.nodeid] = names
    assert not wrong, f"tests without exactly one of {MARKERS}: {wrong}"
