"""`Client.wait` reads every page of a finished run's events, and a result missing from the events read while the run
went is looked up in its whole event log once more (unit tests: a scripted GraphQL endpoint)."""

import json

import httpx
import pytest

from rag_assets.client import Client, ClientError

RESULT = {"question": "q", "answer": "a", "sources": []}


def output_event(step: str = "answer_question") -> dict:
    return {"__typename": "ExecutionStepOutputEvent", "stepKey": step, "message": "",
            "metadataEntries": [{"label": "result", "jsonString": json.dumps(RESULT)}]}


def step_event(step: str = "answer_question") -> dict:
    return {"__typename": "ExecutionStepStartEvent", "stepKey": step, "message": "started"}


def scripted(read) -> tuple[Client, list]:
    """A client whose webserver answers logsForRun with `read(cursor)`: (status, events, next cursor, has more);
    launchRun succeeds with run id "r1". Returns the client and the cursors it asked for."""
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "launchRun" in body["query"]:
            return httpx.Response(200, json={"data": {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r1"}}}})
        cursor = body["variables"].get("cursor")
        asked.append(cursor)
        status, events, next_cursor, more = read(cursor)
        return httpx.Response(200, json={"data": {"runOrError": {"__typename": "Run", "status": status},
                                                  "logsForRun": {"__typename": "EventConnection", "cursor": next_cursor,
                                                                 "hasMore": more, "events": events}}})

    client = Client("http://webserver.test")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client, asked


def test_a_finished_run_with_more_pages_of_events_is_read_to_the_end():
    pages = {None: ("SUCCESS", [step_event()], "c1", True), "c1": ("SUCCESS", [output_event()], "c2", False)}
    client, asked = scripted(pages.__getitem__)
    result = client.run_and_wait("ask_job", {}, "answer_question", timeout_s=5)
    assert result["answer"] == "a" and asked == [None, "c1"]


def test_a_result_missing_from_the_events_read_while_running_is_read_again_from_the_start():
    reads = iter([("SUCCESS", [step_event()], "c1", False),  # what the polling saw
                  ("SUCCESS", [step_event(), output_event()], "c2", False)])  # the whole log, read again
    client, asked = scripted(lambda cursor: next(reads))
    result = client.run_and_wait("ask_job", {}, "answer_question", timeout_s=5)
    assert result["answer"] == "a" and asked == [None, None]


def test_a_run_that_never_logged_its_result_is_still_an_error():
    client, asked = scripted(lambda cursor: ("SUCCESS", [step_event()], "c1", False))
    with pytest.raises(ClientError, match="reported no result"):
        client.run_and_wait("ask_job", {}, "answer_question", timeout_s=5)
    assert asked == [None, None]

