"""The job table as the stack declares it and as local mode makes it: the same indexes (issue 39's owner index)."""

from __future__ import annotations

import pytest

from components.job_store import JobStore, JobStoreArgs
from runtime.jobs.deadlines import DEADLINE_AT, DEADLINE_INDEX, DEADLINE_INDEX_KEY
from runtime.jobs.store import OWNER_INDEX, create_table
from tests.unit.component_harness import build, fleet

TABLE = "aws:dynamodb/table:Table"


@pytest.fixture(scope="module")
def declared():
    cfg = fleet()
    built = build(lambda: JobStore("jobs", JobStoreArgs(stack=cfg.identity, storage=cfg.storage)), "table_name")
    return built.one(TABLE).inputs


def test_owner_index_is_declared_by_owner_and_creation_time(declared):
    indexes = {i["name"]: i for i in declared["globalSecondaryIndexes"]}
    owner = indexes[OWNER_INDEX]
    assert (owner["hashKey"], owner["rangeKey"], owner["projectionType"]) == ("owner", "created_at", "ALL")
    types = {a["name"]: a["type"] for a in declared["attributes"]}
    assert types["owner"] == "S" and types["created_at"] == "N"


def test_local_mode_table_has_the_declared_indexes(declared, aws_clients):
    ddb = aws_clients("dynamodb")
    create_table(ddb, "jobs-shape")
    local = ddb.describe_table(TableName="jobs-shape")["Table"]
    local_indexes = {i["IndexName"]: ({k["KeyType"]: k["AttributeName"] for k in i["KeySchema"]},
                                      i["Projection"]["ProjectionType"]) for i in local["GlobalSecondaryIndexes"]}
    declared_indexes = {i["name"]: ({"HASH": i["hashKey"], "RANGE": i["rangeKey"]}, i["projectionType"])
                        for i in declared["globalSecondaryIndexes"]}
    assert local_indexes == declared_indexes


def test_queued_by_deadline_index_is_declared_sparse_by_deadline(declared):
    """Issue 44: the sweeper's index of never-started queued jobs by deadline (keys only: it reads ids)."""
    index = {i["name"]: i for i in declared["globalSecondaryIndexes"]}[DEADLINE_INDEX]
    assert (index["hashKey"], index["rangeKey"], index["projectionType"]) == (DEADLINE_INDEX_KEY, DEADLINE_AT,
                                                                              "KEYS_ONLY")
    types = {a["name"]: a["type"] for a in declared["attributes"]}
    assert types[DEADLINE_INDEX_KEY] == "S" and types[DEADLINE_AT] == "N"
