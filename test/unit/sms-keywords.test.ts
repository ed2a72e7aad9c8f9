import { describe, expect, it } from 'vitest';
import {
  OPT_IN_WORDS,
  parseKeyword,
  START_WORDS,
  STOP_WORDS,
} from '../../src/ingress/sms-keywords.ts';

describe('parseKeyword', () => {
  it.each(STOP_WORDS.flatMap((w) => [w, w.toLowerCase(), `  ${w} `]))('%j means STOP', (text) => {
    expect(parseKeyword(text)).toEqual({ kind: 'stop' });
  });

  it.each(START_WORDS)('%j means START', (word) => {
    expect(parseKeyword(word.toLowerCase())).toEqual({ kind: 'start' });
  });

  it.each(OPT_IN_WORDS)('%j is an opt-in (taken as one only from an opted-out member)', (word) => {
    expect(parseKeyword(word.toLowerCase())).toEqual({ kind: 'optin' });
  });

  it.each([
    ['JOIN', { kind: 'join' }],
    ['leave', { kind: 'leave' }],
    ['Help', { kind: 'help' }],
    ['info', { kind: 'help' }],
    ['ROOMS', { kind: 'rooms' }],
    ['confirm on', { kind: 'confirm', on: true }],
    ['CONFIRM   OFF', { kind: 'confirm', on: false }],
    ['CONFIRM MAYBE', { kind: 'invalid' }],
    ['confirm', { kind: 'invalid' }],
  ])('%j is %j', (text, keyword) => {
    expect(parseKeyword(text)).toEqual(keyword);
  });

  it.each(['stop it guys', 'Join us at 5', 'hello', '', 'STOP!'])(
    '%j is an ordinary message (keywords are the whole text)',
    (text) => {
      expect(parseKeyword(text)).toBeUndefined();
    },
  );
});
