import './base.css';
import './jobs.css';
import './notebook.css';
import './sweep.css';
import './schedules.css';
