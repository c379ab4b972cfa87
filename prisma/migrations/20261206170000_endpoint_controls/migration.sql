-- Endpoint controls: a rate limit and FIFO ordering per endpoint, the
-- workers' state for them, and the mark of a delivery held back by FIFO.
-- Constant defaults and nullable columns: no table rewrite.
CREATE TYPE "EndpointOrdering" AS ENUM ('NONE', 'FIFO');

ALTER TABLE "App" ADD COLUMN "portalCanSetRateLimit" BOOLEAN NOT NULL DEFAULT true;

ALTER TABLE "Endpoint" ADD COLUMN "rateLimit" INTEGER,
ADD COLUMN "ordering" "EndpointOrdering" NOT NULL DEFAULT 'NONE';

-- No foreign key to the delivery it names: both are deliveries of one
-- endpoint and go together; a key would lock the head's row on every park.
ALTER TABLE "Delivery" ADD COLUMN "heldById" TEXT;

CREATE TABLE "EndpointControl" (
    "endpointId" TEXT NOT NULL,
    "sent" DOUBLE PRECISION[],
    "pausedUntil" TIMESTAMP(3),
    "fifoFrom" TEXT,

    CONSTRAINT "EndpointControl_pkey" PRIMARY KEY ("endpointId")
);

ALTER TABLE "EndpointControl" ADD CONSTRAINT "EndpointControl_endpointId_fkey" FOREIGN KEY ("endpointId") REFERENCES "Endpoint"("id") ON DELETE CASCADE ON UPDATE CASCADE;
