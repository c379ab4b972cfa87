-- The delivery queue moves back onto pg-boss. The tries still queued in
-- "DeliveryJob" are kept in dispatch_upgrade.queued_try, outside Dispatch's
-- schema, until the first process to start after the upgrade moves them into
-- pg-boss's queue (src/delivery/queue.ts) and drops it: pg-boss creates its
-- queue's table itself, so this migration cannot write there.

CREATE SCHEMA IF NOT EXISTS dispatch_upgrade;

CREATE TABLE dispatch_upgrade.queued_try AS
SELECT "deliveryId", "endpointId", trigger::text AS trigger, try,
       "runAt"::timestamptz AS "runAt", runs
FROM "DeliveryJob";

-- DropTable
DROP TABLE "DeliveryJob";
