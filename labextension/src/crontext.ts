/**
 * Schedules in words: a cron expression as a sentence where it is a common one ("every day at
 * 02:00", "every Monday to Friday at 09:30"), times as local time and as "in 3 h" / "5 min
 * ago". Anything uncommon is left to the raw expression, which the views always show beside.
 */

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December'
];

/** The cron macros croniter reads, in words. */
const MACROS: { [macro: string]: string } = {
  '@yearly': 'every year on 1 January at 00:00',
  '@annually': 'every year on 1 January at 00:00',
  '@monthly': 'on the 1st of every month at 00:00',
  '@weekly': 'every Sunday at 00:00',
  '@daily': 'every day at 00:00',
  '@midnight': 'every day at 00:00',
  '@hourly': 'every hour at :00'
};

/** The presets the schedule dialog offers (the custom field takes any other expression). */
export const CRON_PRESETS: { label: string; cron: string }[] = [
  { label: 'Hourly', cron: '0 * * * *' },
  { label: 'Daily at 02:00', cron: '0 2 * * *' },
  { label: 'Weekly, Monday at 02:00', cron: '0 2 * * 1' }
];

/** A whole number in [lo, hi] written plainly (`5`, `05`), else null. */
function whole(field: string, lo: number, hi: number): number | null {
  if (!/^[0-9]{1,2}$/.test(field)) {
    return null;
  }
  const n = Number(field);
  return n >= lo && n <= hi ? n : null;
}

/** `a`, `a and b`, `a, b and c`. */
function joinWords(items: string[]): string {
  return items.length <= 1
    ? items.join('')
    : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function ordinal(n: number): string {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) {
    return `${n}th`;
  }
  return `${n}${({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ?? 'th'}`;
}

/** The days of a day-of-week field: `Monday`, `Monday to Friday`, `Monday and Thursday`. */
function weekdays(field: string): string | null {
  const parts: string[] = [];
  for (const part of field.split(',')) {
    const range = part.split('-');
    if (range.length === 2) {
      const [a, b] = range.map(r => whole(r, 0, 7));
      if (a === null || b === null || a >= b) {
        return null;
      }
      parts.push(`${DAYS[a % 7]} to ${DAYS[b % 7]}`);
    } else {
      const day = whole(part, 0, 7);
      if (day === null) {
        return null;
      }
      parts.push(DAYS[day % 7]);
    }
  }
  return joinWords(parts);
}

/** When in the day: fixed times (`at 02:00`), or a repeat within each day. */
function timeOfDay(minute: string, hour: string): { at: string } | { repeat: string } | null {
  const m = whole(minute, 0, 59);
  if (m !== null) {
    const hours = hour.split(',').map(h => whole(h, 0, 23));
    if (hours.every(h => h !== null)) {
      return { at: `at ${joinWords(hours.map(h => `${pad(h!)}:${pad(m)}`))}` };
    }
    if (hour === '*') {
      return { repeat: `every hour at :${pad(m)}` };
    }
    const step = /^\*\/([0-9]{1,2})$/.exec(hour);
    if (step && Number(step[1]) > 0) {
      return { repeat: `every ${step[1]} hours at :${pad(m)}` };
    }
    return null;
  }
  if (hour !== '*') {
    return null;
  }
  if (minute === '*') {
    return { repeat: 'every minute' };
  }
  const step = /^\*\/([0-9]{1,2})$/.exec(minute);
  return step && Number(step[1]) > 0 ? { repeat: `every ${step[1]} minutes` } : null;
}

/** Which days: `every day`, `every Monday`, `on the 1st of every month`, `every year on 1 May`. */
function days(dom: string, month: string, dow: string): { every: string; on: string } | null {
  if (dom === '*' && month === '*') {
    if (dow === '*') {
      return { every: 'every day', on: '' };
    }
    const names = weekdays(dow);
    return names ? { every: `every ${names}`, on: `on ${names}` } : null;
  }
  const day = whole(dom, 1, 31);
  if (day === null || dow !== '*') {
    return null;
  }
  if (month === '*') {
    return { every: `on the ${ordinal(day)} of every month`, on: `on the ${ordinal(day)}` };
  }
  const mon = whole(month, 1, 12);
  return mon === null
    ? null
    : { every: `every year on ${day} ${MONTHS[mon - 1]}`, on: `on ${day} ${MONTHS[mon - 1]}` };
}

/**
 * A cron expression in words (`0 2 * * *` → `every day at 02:00`), or null when it is not one
 * of the common shapes (the raw expression says it then).
 */
export function describeCron(cron: string): string | null {
  const expr = cron.trim().replace(/\s+/g, ' ');
  if (expr.startsWith('@')) {
    return MACROS[expr.toLowerCase()] ?? null;
  }
  const fields = expr.split(' ');
  if (fields.length !== 5) {
    return null;
  }
  const [minute, hour, dom, month, dow] = fields;
  const time = timeOfDay(minute, hour);
  const when = days(dom, month, dow);
  if (!time || !when) {
    return null;
  }
  if ('at' in time) {
    return `${when.every} ${time.at}`;
  }
  return when.on ? `${time.repeat} ${when.on}` : time.repeat;
}

/**
 * A quick look at an expression before the server reads it: null when it could be one, else
 * what is wrong (the server's croniter has the last word).
 */
export function cronProblem(cron: string): string | null {
  const expr = cron.trim();
  if (!expr) {
    return 'cron: give an expression, e.g. 0 2 * * * (every day at 02:00)';
  }
  if (expr.startsWith('@')) {
    return expr.toLowerCase() in MACROS
      ? null
      : `cron: ${expr} is not one of ${Object.keys(MACROS).join(', ')}`;
  }
  const count = expr.split(/\s+/).length;
  return count === 5
    ? null
    : `cron: five fields (minute hour day-of-month month day-of-week), not ${count}; e.g. 0 2 * * *`;
}

/** Whether `zone` is a time zone this browser knows (IANA name, or UTC). */
export function isTimeZone(zone: string): boolean {
  if (!zone.trim()) {
    return false;
  }
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone.trim() });
    return true;
  } catch {
    return false;
  }
}

/** The browser's own time zone (UTC when it cannot say). */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

/** Every time zone the browser knows, for the dialog's suggestions ([] when it cannot list). */
export function timeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  try {
    return intl.supportedValuesOf?.('timeZone') ?? [];
  } catch {
    return [];
  }
}

/** Milliseconds since the epoch of an API time: epoch seconds or an ISO 8601 string. */
export function toMs(value: string | number | null | undefined): number | null {
  if (value === null || value === undefined || value === '') {
    return null;
  }
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

/** A span of seconds in words: `45 s`, `12 min`, `3 h 20 min`, `14 h`, `3 d`. */
function span(seconds: number): string {
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) {
    return `${Math.max(1, minutes)} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 10) {
    const rest = minutes % 60;
    return rest ? `${hours} h ${rest} min` : `${hours} h`;
  }
  if (hours < 48) {
    return `${Math.round(minutes / 60)} h`;
  }
  return `${Math.round(hours / 24)} d`;
}

/** `in 3 h`, `in 12 min`, `in under a minute`, `5 min ago`, `just now`. */
export function relativeTime(ms: number, now: number = Date.now()): string {
  const seconds = (ms - now) / 1000;
  if (seconds >= 0) {
    return seconds < 60 ? 'in under a minute' : `in ${span(seconds)}`;
  }
  return -seconds < 60 ? 'just now' : `${span(-seconds)} ago`;
}

/** A time as the browser's local date and time, e.g. `Tue, 24 Nov, 02:00`. */
export function localTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit'
  });
}
