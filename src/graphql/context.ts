import type { Actor } from '../domain/actor.ts';
import type { DomainContext } from '../domain/context.ts';
import type { LiveBus } from '../live/bus.ts';

/** What every resolver gets: the domain context of the authenticated actor. */
export interface GraphQLContext {
  actor: Actor;
  domain: DomainContext;
  live: LiveBus | undefined;
  /**
   * Ends the connection of a subscriber the live feed ended: RATE_LIMITED
   * (it stopped reading and overflowed) or UNAUTHENTICATED (its key or
   * session ended), after its transport had a moment to send `reason`.
   */
  cutOff?: (reason: string, code?: 'RATE_LIMITED' | 'UNAUTHENTICATED') => void;
}
