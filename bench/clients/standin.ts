/** The local Twilio REST stand-in (test/twilio/standin.ts) in a process of its own. */
import { type Standin, type StandinOptions, startStandin } from '../../test/twilio/standin.ts';
import { serve } from '../lib/processes.ts';

let standin: Standin | undefined;

serve({
  async start(options: StandinOptions) {
    standin = await startStandin(options);
  },
  accepted: () => standin?.messages().length ?? 0,
});
