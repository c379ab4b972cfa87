-- Scheduled sends: a message's deliverAt, and deliveries SCHEDULED until it
-- (cancelScheduledMessage makes them CANCELED). ADD VALUE is not used in
-- this transaction, so it may run inside one.
ALTER TYPE "DeliveryStatus" ADD VALUE 'SCHEDULED';

-- A nullable column with no default: no table rewrite.
ALTER TABLE "Message" ADD COLUMN "deliverAt" TIMESTAMP(3);

-- Bulk replays (replayMessages) and the deliveries each one matched.
-- CreateTable
CREATE TABLE "Replay" (
    "id" TEXT NOT NULL,
    "appId" TEXT NOT NULL,
    "requester" TEXT NOT NULL,
    "requestId" TEXT,
    "recipientId" TEXT,
    "endpointId" TEXT,
    "eventTypes" TEXT[],
    "status" "DeliveryStatus",
    "since" TIMESTAMP(3) NOT NULL,
    "until" TIMESTAMP(3) NOT NULL,
    "total" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" TIMESTAMP(3),

    CONSTRAINT "Replay_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ReplayDelivery" (
    "replayId" TEXT NOT NULL,
    "deliveryId" TEXT NOT NULL,
    "queued" BOOLEAN,

    CONSTRAINT "ReplayDelivery_pkey" PRIMARY KEY ("replayId","deliveryId")
);

-- CreateIndex
CREATE INDEX "Replay_appId_id_idx" ON "Replay"("appId", "id");

-- CreateIndex
CREATE UNIQUE INDEX "Replay_appId_requester_requestId_key" ON "Replay"("appId", "requester", "requestId");

-- CreateIndex
CREATE INDEX "ReplayDelivery_deliveryId_idx" ON "ReplayDelivery"("deliveryId");

-- AddForeignKey
ALTER TABLE "Replay" ADD CONSTRAINT "Replay_appId_fkey" FOREIGN KEY ("appId") REFERENCES "App"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ReplayDelivery" ADD CONSTRAINT "ReplayDelivery_replayId_fkey" FOREIGN KEY ("replayId") REFERENCES "Replay"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ReplayDelivery" ADD CONSTRAINT "ReplayDelivery_deliveryId_fkey" FOREIGN KEY ("deliveryId") REFERENCES "Delivery"("id") ON DELETE CASCADE ON UPDATE CASCADE;
