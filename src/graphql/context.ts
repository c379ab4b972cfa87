import type { Actor } from '../domain/actor.ts';
import type { DomainContext } from '../domain/context.ts';
import type { CutOff, LiveFeed } from '../live/feed.ts';

/** What every resolver gets: the domain context of the authenticated actor. */
export interface GraphQLContext {
  actor: Actor;
  domain: DomainContext;
  /** The live feed of this process, which subscriptions read. */
  live: LiveFeed;
  /** How this request's transport drops a subscriber the live feed ended (see CutOff). */
  cutOff?: CutOff;
}
