-- A workspace's operational app (at most one, enforced under a lock on the
-- workspace's row by enableOperationalEvents): Dispatch sends its
-- operational events as messages of this app.

-- AlterTable
ALTER TABLE "App" ADD COLUMN "operational" BOOLEAN NOT NULL DEFAULT false;
