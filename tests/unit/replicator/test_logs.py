import json
import logging

from replicator.observe.logs import JsonFormatter


def test_records_become_one_json_line_with_their_extra_fields():
    record = logging.LogRecord("replicator.http.handlers", logging.INFO, __file__, 1, "request", None, None)
    record.request_id, record.status = "abc", 201
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "request" and entry["request_id"] == "abc" and entry["status"] == 201
    assert "\n" not in line


def test_each_line_carries_its_own_second():
    """The time's text is reused within a second only."""
    formatter = JsonFormatter()
    times = []
    for created in (1_800_000_000.1, 1_800_000_000.9, 1_800_000_001.2, 1_800_000_000.5):
        record = logging.LogRecord("replicator", logging.INFO, __file__, 1, "request", None, None)
        record.created = created
        times.append(json.loads(formatter.format(record))["time"])
    expected = [
        formatter.formatTime(_at(c), "%Y-%m-%dT%H:%M:%S")
        for c in (1_800_000_000, 1_800_000_000, 1_800_000_001, 1_800_000_000)
    ]
    assert times == expected and times[1] != times[2]


def _at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("replicator", logging.INFO, __file__, 1, "", None, None)
    record.created = created
    return record
