import { createHmac } from 'node:crypto';

/**
 * X-Twilio-Signature as Twilio computes it ("Validating requests"): the full URL Twilio
 * called (with its query string), then every POST parameter sorted by name, name and value
 * appended with no separators; HMAC-SHA1 with the auth token, base64. Written independently
 * of the `twilio` package so tests sign the way Twilio does, not the way the node checks.
 */
export function twilioSignature(
  authToken: string,
  url: string,
  params: Record<string, string>,
): string {
  const data = Object.keys(params)
    .sort()
    .reduce((acc, name) => acc + name + params[name], url);
  return createHmac('sha1', authToken).update(data, 'utf8').digest('base64');
}

/**
 * POSTs a form to `target` as Twilio would call `signedUrl` (the public URL, which a proxy
 * forwards to `target`): form-encoded, signed over `signedUrl`.
 */
export function postSigned(
  target: string,
  signedUrl: string,
  authToken: string,
  params: Record<string, string>,
  signature: string | null = twilioSignature(authToken, signedUrl, params),
): Promise<Response> {
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    'user-agent': 'TwilioProxy/1.1',
  };
  if (signature !== null) headers['x-twilio-signature'] = signature;
  return fetch(target, { method: 'POST', headers, body: new URLSearchParams(params).toString() });
}
