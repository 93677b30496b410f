-- netta events in ClickHouse (works from 18.16 on: no DateTime64 needed).
-- Feed it with netta's HTTP sink; ClickHouse maps the nested JSON onto the
-- dotted columns and skips fields it has no column for:
--   netta agent --sink 'http://127.0.0.1:8123/?input_format_import_nested_json=1&input_format_skip_unknown_fields=1&query=INSERT%20INTO%20netta.events%20FORMAT%20JSONEachRow#gzip'
CREATE DATABASE IF NOT EXISTS netta;

CREATE TABLE IF NOT EXISTS netta.events
(
    `@timestamp` String,
    `date` Date MATERIALIZED toDate(substring(`@timestamp`, 1, 10)),
    `event.kind` String,
    `event.action` String,
    `event.id` String,
    `event.outcome` String,
    `event.duration` UInt64,
    `host.name` String,
    `host.id` String,
    `agent.id` String,
    `network.transport` String,
    `network.direction` String,
    `network.community_id` String,
    `network.bytes` UInt64,
    `source.ip` String,
    `source.port` UInt16,
    `destination.ip` String,
    `destination.port` UInt16,
    `process.pid` UInt32,
    `process.name` String,
    `rule.id` String,
    `message` String,
    `netta.sock_id` String,
    `netta.state` String,
    `netta.lost` UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (date, `host.name`, `event.action`);
