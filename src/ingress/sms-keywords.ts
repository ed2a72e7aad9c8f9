/** A keyword text (DESIGN §5): the whole message, case-insensitive. */
export type Keyword =
  | { kind: 'join' | 'leave' | 'stop' | 'start' | 'help' | 'rooms' }
  /** YES or UNSTOP: an opt-in only for a member opted out of the number texted, else a message. */
  | { kind: 'optin' }
  | { kind: 'confirm'; on: boolean }
  /** Starts like a keyword but is not one (`CONFIRM MAYBE`): answered with HELP. */
  | { kind: 'invalid' };

/** The standard opt-out words carriers and Twilio honour, all meaning STOP. */
export const STOP_WORDS = [
  'STOP',
  'STOPALL',
  'UNSUBSCRIBE',
  'CANCEL',
  'END',
  'QUIT',
  'REVOKE',
  'OPTOUT',
];
/** START: always the opt-in keyword. */
export const START_WORDS = ['START'];
/**
 * Opt-in words that are also everyday replies ("Yes"): they opt back in only a member who
 * opted out of the number texted; from anyone else they are ordinary messages.
 */
export const OPT_IN_WORDS = ['YES', 'UNSTOP'];
const HELP_WORDS = ['HELP', 'INFO'];

/** The keyword a text is, or undefined for an ordinary message. */
export function parseKeyword(body: string): Keyword | undefined {
  const words = body.trim().toUpperCase().split(/\s+/);
  const [first = '', ...rest] = words;
  if (first === 'CONFIRM') {
    if (rest.length === 1 && (rest[0] === 'ON' || rest[0] === 'OFF'))
      return { kind: 'confirm', on: rest[0] === 'ON' };
    return { kind: 'invalid' };
  }
  if (rest.length > 0) return undefined;
  if (STOP_WORDS.includes(first)) return { kind: 'stop' };
  if (START_WORDS.includes(first)) return { kind: 'start' };
  if (OPT_IN_WORDS.includes(first)) return { kind: 'optin' };
  if (HELP_WORDS.includes(first)) return { kind: 'help' };
  if (first === 'JOIN') return { kind: 'join' };
  if (first === 'LEAVE') return { kind: 'leave' };
  if (first === 'ROOMS') return { kind: 'rooms' };
  return undefined;
}
