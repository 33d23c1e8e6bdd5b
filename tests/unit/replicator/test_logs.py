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
