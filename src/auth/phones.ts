import {
  type CountryCode,
  isSupportedCountry,
  parsePhoneNumberFromString,
} from 'libphonenumber-js';
import { ConfigError, ValidationError } from '../errors.ts';

export interface PhoneRules {
  /** ISO 3166 region a number without a country code belongs to (`US`). */
  defaultRegion: string;
  /** Regions codes may be texted to; empty: the default region only. */
  allowedCountries: readonly string[];
}

export type Phone = { e164: string; country: string };

/**
 * Phones as people type them (`(201) 555-0123`, `+44 7700 900123`) to E.164, with the default
 * region's country code added when missing. Only valid numbers pass: a code texted to a
 * number that cannot exist is money spent on nothing, or on a fraudster's premium route.
 */
export class PhoneNumbers {
  readonly allowed: ReadonlySet<string>;
  private readonly region: CountryCode;

  constructor(rules: PhoneRules) {
    const region = rules.defaultRegion.toUpperCase();
    if (!isSupportedCountry(region))
      throw new ConfigError('auth.defaultRegion', `auth.defaultRegion: unknown region ${region}`);
    this.region = region;
    const allowed = rules.allowedCountries.map((c) => c.toUpperCase());
    const unknown = allowed.find((c) => !isSupportedCountry(c));
    if (unknown !== undefined)
      throw new ConfigError(
        'auth.allowedCountries',
        `auth.allowedCountries: unknown region ${unknown} (ISO 3166 codes such as US, CA, GB)`,
      );
    this.allowed = new Set(allowed.length > 0 ? allowed : [region]);
  }

  /** The number in E.164 and its region; throws ValidationError (field `phone`) when invalid. */
  parse(input: string): Phone {
    const parsed = parsePhoneNumberFromString(input, this.region);
    if (!parsed?.isValid() || parsed.ext !== undefined)
      throw new ValidationError(
        'phone: not a valid phone number (E.164 such as +12015550123, or a national number)',
        'phone',
      );
    return { e164: parsed.number, country: parsed.country ?? '' };
  }

  isAllowed(phone: Phone): boolean {
    return this.allowed.has(phone.country);
  }
}
