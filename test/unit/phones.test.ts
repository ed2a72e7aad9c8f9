import { describe, expect, it } from 'vitest';
import { PhoneNumbers } from '../../src/auth/phones.ts';
import { ConfigError, ValidationError } from '../../src/errors.ts';

describe('PhoneNumbers', () => {
  const us = new PhoneNumbers({ defaultRegion: 'US', allowedCountries: [] });

  it('adds the default region’s country code and normalises to E.164', () => {
    for (const typed of [
      '(201) 555-0123',
      '201-555-0123',
      '2015550123',
      '1 201 555 0123',
      '+1 201 555 0123',
    ])
      expect(us.parse(typed), typed).toEqual({ e164: '+12015550123', country: 'US' });
    expect(
      new PhoneNumbers({ defaultRegion: 'gb', allowedCountries: [] }).parse('07400 123456'),
    ).toEqual({
      e164: '+447400123456',
      country: 'GB',
    });
  });

  it('refuses what is not a valid number, extensions included', () => {
    for (const bad of [
      '',
      '12',
      '+15550101234',
      'call me',
      "'; DROP TABLE users; --",
      '+1 201 555 0123 ext 5',
    ])
      expect(() => us.parse(bad), bad).toThrow(ValidationError);
  });

  it('allows the default region only unless told otherwise', () => {
    expect(us.isAllowed(us.parse('+12015550123'))).toBe(true);
    expect(us.isAllowed(us.parse('+18095551234'))).toBe(false); // +1, but the Dominican Republic
    expect(us.isAllowed(us.parse('+447400123456'))).toBe(false);
    const more = new PhoneNumbers({ defaultRegion: 'US', allowedCountries: ['us', 'GB'] });
    expect(more.isAllowed(more.parse('+447400123456'))).toBe(true);
    expect(() => new PhoneNumbers({ defaultRegion: 'XX', allowedCountries: [] })).toThrow(
      ConfigError,
    );
    expect(() => new PhoneNumbers({ defaultRegion: 'US', allowedCountries: ['ZZ'] })).toThrow(
      ConfigError,
    );
  });
});
