/** The local Twilio REST stand-in (test/twilio/standin.ts) in a process of its own. */
import { type Standin, startStandin } from '../../test/twilio/standin.ts';
import { serve } from '../lib/processes.ts';

let standin: Standin | undefined;

serve({
  async start() {
    standin = await startStandin();
    return { url: standin.url, accountSid: standin.accountSid, authToken: standin.authToken };
  },
  accepted: () => standin?.messages().length ?? 0,
});
