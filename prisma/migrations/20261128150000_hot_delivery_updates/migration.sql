-- A try updates its Delivery twice (SENDING, then its outcome) and its
-- Attempt once. With no index on a column those updates change, and room
-- left on each page, PostgreSQL updates in place (HOT): no new entry in
-- every index, far less WAL. The queue moved to "DeliveryJob", so nothing
-- looks deliveries up by status and next attempt any more.

-- DropIndex
DROP INDEX "Delivery_status_nextAttemptAt_idx";

-- Room for the updated row versions on the page (not expressible in schema.prisma).
ALTER TABLE "Delivery" SET (fillfactor = 70);
ALTER TABLE "Attempt" SET (fillfactor = 80);
