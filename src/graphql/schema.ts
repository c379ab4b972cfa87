import { builder } from './builder.ts';
import './types/scalars.ts';
import './types/enums.ts';
import './types/viewer.ts';
import './types/workspace.ts';
import './types/app.ts';
import './types/endpoint.ts';
import './types/endpoint-health.ts';
import './types/message.ts';
import './types/portal-session.ts';
import './types/replay.ts';
import './types/operational.ts';
import './types/subscriptions.ts';

export const schema = builder.toSchema({ sortSchema: true });
