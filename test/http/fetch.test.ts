import { credentialApiSuite } from './credential-api.suite.js';

credentialApiSuite('fetch');
