-- The live feed's event log (docs/live-feed.md): one row per attempt started
-- or ended and per new message, written by statement-level triggers in the
-- same transaction as the change, so every path that writes an attempt or a
-- message (the delivery engine's batches, a lost worker's attempt closed,
-- sendMessage's group commit, operational events) records its events, once
-- per statement, and a rolled-back change records nothing.
--
-- The order: (xid, seq). xid is the writing transaction's id (xid8, as
-- bigint), seq the order of rows within it. A row is only read once every
-- transaction with a lower xid has ended (xid < pg_snapshot_xmin of the
-- reader's snapshot), so no row can appear later below a position already
-- read: a cursor (xid, seq) resumes without a gap. A bigserial alone cannot
-- do this: its numbers are given at insert, not at commit.
CREATE TABLE "LiveEvent" (
    "xid" BIGINT NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "kind" TEXT NOT NULL,
    "rowId" TEXT NOT NULL,
    "appId" TEXT NOT NULL,
    "recipientId" TEXT NOT NULL,
    "messageId" TEXT NOT NULL,
    "endpointId" TEXT,
    "status" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "LiveEvent_pkey" PRIMARY KEY ("xid","seq")
);

-- Where retention has pruned the log to: a cursor at or below it is expired.
CREATE TABLE "LiveEventHorizon" (
    "id" INTEGER NOT NULL,
    "xid" BIGINT NOT NULL,
    "seq" BIGINT NOT NULL,

    CONSTRAINT "LiveEventHorizon_pkey" PRIMARY KEY ("id")
);

CREATE FUNCTION dispatch_live_attempts_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "LiveEvent" (xid, kind, "rowId", "appId", "recipientId", "messageId", "endpointId", status)
  SELECT pg_current_xact_id()::text::bigint, 'attempt', n.id, n."appId", n."recipientId", n."messageId", n."endpointId", n.status::text
  FROM live_new n;
  RETURN NULL;
END
$$;

CREATE TRIGGER "Attempt_live_inserted" AFTER INSERT ON "Attempt"
  REFERENCING NEW TABLE AS live_new
  FOR EACH STATEMENT EXECUTE FUNCTION dispatch_live_attempts_inserted();

CREATE FUNCTION dispatch_live_attempts_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "LiveEvent" (xid, kind, "rowId", "appId", "recipientId", "messageId", "endpointId", status)
  SELECT pg_current_xact_id()::text::bigint, 'attempt', n.id, n."appId", n."recipientId", n."messageId", n."endpointId", n.status::text
  FROM live_new n JOIN live_old o ON o.id = n.id
  WHERE o.status IS DISTINCT FROM n.status;
  RETURN NULL;
END
$$;

CREATE TRIGGER "Attempt_live_updated" AFTER UPDATE ON "Attempt"
  REFERENCING OLD TABLE AS live_old NEW TABLE AS live_new
  FOR EACH STATEMENT EXECUTE FUNCTION dispatch_live_attempts_updated();

CREATE FUNCTION dispatch_live_messages_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "LiveEvent" (xid, kind, "rowId", "appId", "recipientId", "messageId")
  SELECT pg_current_xact_id()::text::bigint, 'message', n.id, n."appId", n."recipientId", n.id
  FROM live_new n;
  RETURN NULL;
END
$$;

CREATE TRIGGER "Message_live_inserted" AFTER INSERT ON "Message"
  REFERENCING NEW TABLE AS live_new
  FOR EACH STATEMENT EXECUTE FUNCTION dispatch_live_messages_inserted();
