import { DispatchError } from '../domain/errors.ts';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './builder.ts';

/** Page-size options shared by every connection: asking for more than the maximum is an error, not a silent clamp. */
export const PAGE = {
  defaultSize: DEFAULT_PAGE_SIZE,
  maxSize: (args: { first?: number | null; last?: number | null }) => {
    for (const [name, value] of [
      ['first', args.first],
      ['last', args.last],
    ] as const) {
      if (value != null && (value < 0 || value > MAX_PAGE_SIZE)) {
        throw new DispatchError('BAD_USER_INPUT', `${name} must be from 0 to ${MAX_PAGE_SIZE}`);
      }
    }
    return MAX_PAGE_SIZE;
  },
};
