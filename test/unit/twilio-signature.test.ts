import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { twilioSignature } from '../twilio/signing.ts';

// Twilio's published example ("Validating requests", twilio.com/docs/usage/security).
const AUTH_TOKEN = '12345';
const URL = 'https://mycompany.com/myapp.php?foo=1&bar=2';
const PARAMS = {
  CallSid: 'CA1234567890ABCDE',
  Caller: '+12349013030',
  Digits: '1234',
  From: '+12349013030',
  To: '+18005551212',
};
const EXPECTED = '0/KCTR6DLpKmkAf8muzZqo1nDgQ=';

describe("Twilio's request signature", () => {
  it('the twilio package validates the published test vector', () => {
    expect(twilio.validateRequest(AUTH_TOKEN, EXPECTED, URL, PARAMS)).toBe(true);
    expect(twilio.getExpectedTwilioSignature(AUTH_TOKEN, URL, PARAMS)).toBe(EXPECTED);
  });

  it('the test signer (test/twilio/signing.ts) computes the published signature', () => {
    expect(twilioSignature(AUTH_TOKEN, URL, PARAMS)).toBe(EXPECTED);
    // Parameter order in the form does not matter: Twilio sorts them by name.
    const shuffled = Object.fromEntries(Object.entries(PARAMS).reverse());
    expect(twilioSignature(AUTH_TOKEN, URL, shuffled)).toBe(EXPECTED);
  });

  it('a changed parameter, URL, query or token no longer validates', () => {
    expect(twilio.validateRequest(AUTH_TOKEN, EXPECTED, URL, { ...PARAMS, Digits: '9999' })).toBe(
      false,
    );
    expect(
      twilio.validateRequest(
        AUTH_TOKEN,
        EXPECTED,
        'https://mycompany.com/myapp.php?foo=1&bar=3',
        PARAMS,
      ),
    ).toBe(false);
    expect(
      twilio.validateRequest(
        AUTH_TOKEN,
        EXPECTED,
        'https://evil.example/myapp.php?foo=1&bar=2',
        PARAMS,
      ),
    ).toBe(false);
    expect(twilio.validateRequest('54321', EXPECTED, URL, PARAMS)).toBe(false);
    expect(twilio.validateRequest(AUTH_TOKEN, '', URL, PARAMS)).toBe(false);
  });

  it('what the test signer signs, the twilio package accepts (an SMS webhook with media)', () => {
    const url = 'https://relay.example.test/thr/twilio/sms';
    const params = {
      MessageSid: 'SM0123456789abcdef0123456789abcdef',
      From: '+15550000001',
      To: '+15550000002',
      Body: 'Zoë’s tomatoes — 🍅 & more',
      NumMedia: '1',
      MediaUrl0: 'https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1',
    };
    const signature = twilioSignature('secret', url, params);
    expect(twilio.validateRequest('secret', signature, url, params)).toBe(true);
  });
});
