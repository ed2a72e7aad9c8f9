import { ENVELOPE_VERSION, type Envelope } from '../../src/funnel/envelope.ts';

/** A valid v1 envelope from a service (a notification), for tests that feed the funnel directly. */
export function serviceEnvelope(
  room: string,
  body: string,
  overrides: Partial<Envelope> = {},
): Envelope {
  return {
    v: ENVELOPE_VERSION,
    id: `http:${room}:service:test:${body}`,
    room,
    source: 'http',
    sender: { kind: 'service', id: 'test' },
    body,
    kind: 'notification',
    origin: { node: 'elsewhere' },
    receivedAt: Date.now(),
    ...overrides,
  };
}
