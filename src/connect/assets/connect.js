// The Connect page's script: reads the page token from the URL fragment, shows the default
// app's fields, and writes each value through credvault/client. It never reads a value back:
// the API is write-only, and the page says only which fields are set.
import { createCredvaultClient, CredvaultError } from './client.js';

const EXPIRED = 'This link has expired or was revoked. Ask for a new link to connect your account.';
const MISSING = 'This link is incomplete or damaged. Open the whole link you were given, or ask for a new one.';
const UNREACHABLE = 'The server could not be reached. Check your connection and try again.';

const byId = (id) => document.getElementById(id);
const setState = (state) => {
  document.body.dataset.state = state;
};

/** The token from `#token=...`, then gone from the address bar, history and bookmarks. */
function takeToken() {
  const token = new URLSearchParams(window.location.hash.slice(1)).get('token');
  if (window.location.hash !== '') window.history.replaceState(null, '', window.location.pathname + window.location.search);
  return token === null || token === '' ? undefined : token;
}

function showFormError(message) {
  const box = byId('form-error');
  box.textContent = message;
  box.hidden = message === '';
}

/** Ends the page: a message and nothing more to fill in. */
function fail(message) {
  showFormError(message);
  byId('connect-form').hidden = true;
  byId('intro').hidden = true;
  setState('failed');
}

const isEnded = (error) => error instanceof CredvaultError && (error.status_code === 401 || error.status_code === 403);

function messageOf(error) {
  if (!(error instanceof CredvaultError)) return 'Something went wrong. Try again.';
  if (isEnded(error)) return EXPIRED;
  if (error.error === 'NETWORK_ERROR') return UNREACHABLE;
  return error.message;
}

const controlId = (name) => `field-${name}`;

/** One field: label tied to its control, the "Saved" mark, help, and its own error line. */
function renderField(field) {
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  wrapper.dataset.field = field.name;

  const head = document.createElement('div');
  head.className = 'field-head';
  const label = document.createElement('label');
  label.htmlFor = controlId(field.name);
  label.textContent = field.label;
  const mustFill = field.required && !field.is_set;
  if (mustFill) {
    const mark = document.createElement('span');
    mark.className = 'required-mark';
    mark.setAttribute('aria-hidden', 'true');
    mark.textContent = '*';
    label.append(mark);
  }
  head.append(label);
  if (field.is_set) head.append(savedMark(field.name));
  wrapper.append(head);

  let control;
  if (field.type === 'textarea') {
    control = document.createElement('textarea');
  } else if (field.type === 'select') {
    control = document.createElement('select');
    const none = document.createElement('option');
    none.value = '';
    none.textContent = field.is_set ? 'Keep the saved choice' : 'Choose…';
    control.append(none);
    for (const option of field.options ?? []) {
      const element = document.createElement('option');
      element.value = option.value;
      element.textContent = option.label;
      control.append(element);
    }
  } else {
    control = document.createElement('input');
    control.type = { password: 'password', url: 'url', email: 'email' }[field.type] ?? 'text';
    if (field.type === 'number') control.inputMode = 'decimal';
    control.autocomplete = field.type === 'password' ? 'new-password' : 'off';
    control.spellcheck = false;
    control.autocapitalize = 'off';
  }
  // No `name`: a form's named controls shadow its own properties (a field named `addEventListener`
  // would replace the method); the page reads each control by its id, which has a prefix.
  control.id = controlId(field.name);
  if (field.placeholder !== undefined && field.type !== 'select') control.placeholder = field.placeholder;
  if (field.is_set && field.type !== 'select') control.placeholder = 'Saved: leave empty to keep it';
  if (mustFill) control.setAttribute('aria-required', 'true');
  const described = [];
  if (field.help_text !== undefined) {
    const help = document.createElement('p');
    help.className = 'help';
    help.id = `help-${field.name}`;
    help.textContent = field.help_text;
    described.push(help.id);
    wrapper.append(control, help);
  } else {
    wrapper.append(control);
  }
  const error = document.createElement('p');
  error.className = 'field-error';
  error.id = `error-${field.name}`;
  error.setAttribute('aria-live', 'polite');
  described.push(error.id);
  control.setAttribute('aria-describedby', described.join(' '));
  wrapper.append(error);
  return wrapper;
}

function savedMark(name) {
  const mark = document.createElement('span');
  mark.className = 'field-set';
  mark.id = `set-${name}`;
  mark.textContent = 'Saved';
  return mark;
}

function setFieldError(name, message) {
  byId(`error-${name}`).textContent = message;
  byId(controlId(name)).setAttribute('aria-invalid', message === '' ? 'false' : 'true');
}

async function main() {
  const token = takeToken();
  if (token === undefined) {
    byId('app-name').textContent = 'Connect';
    fail(MISSING);
    return;
  }
  // Relative to the page, so that it holds behind a proxy that adds a path prefix.
  const api = document.querySelector('meta[name="credvault-api"]').content;
  const baseUrl = new URL(api, document.baseURI).href.replace(/\/$/, '');
  let client;
  try {
    client = createCredvaultClient({ baseUrl, token });
  } catch {
    // A token no header can carry: the link was damaged on its way.
    byId('app-name').textContent = 'Connect';
    fail(MISSING);
    return;
  }

  let app;
  try {
    app = await client.fields();
  } catch (error) {
    byId('app-name').textContent = 'Connect';
    fail(messageOf(error));
    return;
  }
  byId('app-name').textContent = app.name ?? 'Connect';
  document.title = `Connect ${app.name ?? ''}`.trim();
  const fields = app.fields;
  const container = byId('fields');
  for (const field of fields) container.append(renderField(field));
  byId('intro').hidden = false;
  byId('connect-form').hidden = false;
  setState('ready');

  const form = byId('connect-form');
  const submit = byId('submit');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (document.body.dataset.state !== 'ready') return;
    showFormError('');
    const writes = [];
    let firstInvalid;
    for (const field of fields) {
      const control = byId(controlId(field.name));
      const value = control.value;
      setFieldError(field.name, '');
      if (value.trim() === '') {
        if (field.required && !field.is_set) {
          setFieldError(field.name, `Enter ${field.label}.`);
          firstInvalid ??= control;
        }
        continue;
      }
      writes.push({ field, control, value });
    }
    if (firstInvalid !== undefined) {
      showFormError('Some required fields are empty.');
      firstInvalid.focus();
      return;
    }
    if (writes.length === 0) {
      showFormError('Nothing to save: fill in at least one field.');
      return;
    }
    setState('submitting');
    submit.disabled = true;
    const saved = [];
    let refused;
    for (const { field, control, value } of writes) {
      try {
        await client.upsertCredential(field.name, value);
      } catch (error) {
        if (isEnded(error)) {
          fail(EXPIRED);
          return;
        }
        if (error instanceof CredvaultError && error.error === 'VALIDATION_ERROR') {
          setFieldError(field.name, error.message);
          refused ??= control;
          continue;
        }
        // The store or the network failed: stop, and say what did get saved.
        showFormError(`${messageOf(error)}${saved.length > 0 ? ` Saved before the failure: ${saved.join(', ')}.` : ''}`);
        submit.disabled = false;
        setState('ready');
        return;
      }
      // Saved: never keep a secret in the page longer than needed.
      control.value = '';
      if (!field.is_set) {
        field.is_set = true;
        byId(controlId(field.name)).closest('.field').querySelector('.field-head').append(savedMark(field.name));
      }
      saved.push(field.label);
    }
    submit.disabled = false;
    if (refused !== undefined) {
      showFormError(saved.length > 0 ? `Saved: ${saved.join(', ')}. Check the fields marked below.` : 'Check the fields marked below.');
      setState('ready');
      refused.focus();
      return;
    }
    byId('success-detail').textContent = `Saved: ${saved.join(', ')}.`;
    form.hidden = true;
    byId('intro').hidden = true;
    byId('success').hidden = false;
    setState('done');
  });
}

main().catch(() => fail('Something went wrong. Reload the page to try again.'));
