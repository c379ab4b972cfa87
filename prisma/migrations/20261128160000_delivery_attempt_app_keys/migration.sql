-- Deliveries and attempts keep appId (a copy of their message's) without a
-- foreign key of their own to App: every delivery and attempt written took a
-- FOR KEY SHARE lock on the one App row of the app, which writes WAL and,
-- with concurrent writers, a MultiXact. The message's keys to App and
-- Recipient, and the cascades through Message and Delivery, keep them
-- consistent. Nothing looks attempts up by app, so that index goes too.

-- DropForeignKey
ALTER TABLE "Delivery" DROP CONSTRAINT "Delivery_appId_fkey";

-- DropForeignKey
ALTER TABLE "Attempt" DROP CONSTRAINT "Attempt_appId_fkey";

-- DropIndex
DROP INDEX "Attempt_appId_id_idx";

