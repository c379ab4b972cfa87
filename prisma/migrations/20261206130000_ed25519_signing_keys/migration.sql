-- Standard Webhooks v1a: an endpoint's signing key may be an ed25519 key pair.
-- Its whsk_ private key sits in "secret" like a whsec_ secret does; its whpk_
-- public key, the one shown, beside it. An app chooses the scheme of the keys
-- its new endpoints get.
CREATE TYPE "SignatureScheme" AS ENUM ('HMAC_SHA256', 'ED25519');

ALTER TABLE "App" ADD COLUMN "signatureScheme" "SignatureScheme" NOT NULL DEFAULT 'HMAC_SHA256';

ALTER TABLE "EndpointSecret" ADD COLUMN "publicKey" TEXT;
